"""Model and trainer lookup."""

from recbole.model.sequential_recommender import BERT4Rec, S3Rec, SASRec
from recbole.trainer import PretrainTrainer
from recbole.utils import ModelType

from recbole_sprint.compat import CompatCollector, CompatTrainerMixin
from recbole_sprint.model.sequential_recommender.sasrecsprint import SASRecSPRINT
from recbole_sprint.trainer import SprintTrainer
from recbole_sprint.utils import get_model, get_trainer, plugin_model_names


def test_get_model_finds_plugin_and_recbole_models():
    assert get_model("SASRecSPRINT") is SASRecSPRINT
    assert get_model("SASRec") is SASRec and get_model("BERT4Rec") is BERT4Rec
    assert "SASRecSPRINT" in plugin_model_names()


def test_get_trainer_gives_every_model_the_compatibility_fixes():
    assert get_trainer(ModelType.SEQUENTIAL, "SASRecSPRINT") is SprintTrainer
    assert get_trainer(ModelType.SEQUENTIAL, "SASRec") is SprintTrainer
    s3rec_trainer = get_trainer(ModelType.SEQUENTIAL, "S3Rec")  # RecBole's special trainer, fixed
    assert issubclass(s3rec_trainer, PretrainTrainer) and issubclass(s3rec_trainer, CompatTrainerMixin)
    assert S3Rec.__name__ == "S3Rec"
    assert SprintTrainer.collector_class is CompatCollector or issubclass(SprintTrainer.collector_class, CompatCollector)
