"""Every Kafka topic name, in one place: ``conveyor.<noun>.<past-tense verb>``.

A breaking change to an event is a new versioned event on a new topic (``...v2``),
never a silent change to one of these.
"""

from typing import Final

DATA_ARRIVED: Final = "conveyor.data.arrived"
DATASET_VALIDATED: Final = "conveyor.dataset.validated"
DATASET_REJECTED: Final = "conveyor.dataset.rejected"
MODEL_TRAINED: Final = "conveyor.model.trained"
TRAINING_FAILED: Final = "conveyor.training.failed"
MODEL_EVALUATED: Final = "conveyor.model.evaluated"
MODEL_REGISTERED: Final = "conveyor.model.registered"
MODEL_APPROVED: Final = "conveyor.model.approved"
MODEL_REJECTED: Final = "conveyor.model.rejected"
MODEL_PROMOTED: Final = "conveyor.model.promoted"
MODEL_DEPLOYED: Final = "conveyor.model.deployed"
DEPLOYMENT_FAILED: Final = "conveyor.deployment.failed"
BATCH_PREDICTION_REQUESTED: Final = "conveyor.batch_prediction.requested"
BATCH_PREDICTION_COMPLETED: Final = "conveyor.batch_prediction.completed"
BATCH_PREDICTION_FAILED: Final = "conveyor.batch_prediction.failed"
PREDICTIONS_CAPTURED: Final = "conveyor.predictions.captured"
DRIFT_CHECKED: Final = "conveyor.drift.checked"
DRIFT_DETECTED: Final = "conveyor.drift.detected"
RETRAIN_REQUESTED: Final = "conveyor.retrain.requested"
RELEASE_STARTED: Final = "conveyor.release.started"
RELEASE_STEP_CHECKED: Final = "conveyor.release.step_checked"
RELEASE_PAUSED: Final = "conveyor.release.paused"
RELEASE_RESUMED: Final = "conveyor.release.resumed"
RELEASE_PROMOTED: Final = "conveyor.release.promoted"
RELEASE_ROLLED_BACK: Final = "conveyor.release.rolled_back"
# Every step of a gradual release: the deploy service publishes them, the registry journals them.
RELEASE_TOPICS: Final = (
    RELEASE_STARTED,
    RELEASE_STEP_CHECKED,
    RELEASE_PAUSED,
    RELEASE_RESUMED,
    RELEASE_PROMOTED,
    RELEASE_ROLLED_BACK,
)

DEAD_LETTER_SUFFIX: Final = ".dlq"


def dead_letter_topic(topic: str) -> str:
    """The dead-letter topic that receives what could not be processed from ``topic``."""
    return f"{topic}{DEAD_LETTER_SUFFIX}"
