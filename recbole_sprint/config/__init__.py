from recbole_sprint.config.configurator import Config, recbole_argv_cleared

__all__ = ["Config", "recbole_argv_cleared"]
