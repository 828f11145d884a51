from recbole_sprint.quick_start.quick_start import load_data_and_model, objective_function, run, run_recbole_sprint

__all__ = ["run", "run_recbole_sprint", "load_data_and_model", "objective_function"]
