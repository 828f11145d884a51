from recbole_sprint.config.configurator import Config

__all__ = ["Config"]
