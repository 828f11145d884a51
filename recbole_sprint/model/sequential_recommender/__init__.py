"""Plugin sequential models; each module holds one model class named like the module (RecBole's convention)."""
from recbole_sprint.model.sequential_recommender.sasrecsprint import SASRecSPRINT
from recbole_sprint.model.sequential_recommender.bert4recsprint import BERT4RecSPRINT
from recbole_sprint.model.sequential_recommender.hstu import HSTU
from recbole_sprint.model.sequential_recommender.hstusprint import HSTUSPRINT
from recbole_sprint.model.sequential_recommender.sasrecpp import SASRecPP
from recbole_sprint.model.sequential_recommender.sasrecppsprint import SASRecPPSPRINT
