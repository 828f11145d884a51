"""Plugin sequential models; each module holds one model class named like the module (RecBole's convention)."""
from recbole_sprint.model.sequential_recommender.sasrecsprint import SASRecSPRINT
