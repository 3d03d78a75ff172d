"""Keras-style callbacks for fit()."""
from ember.train.callbacks.backup_and_restore import BackupAndRestore
from ember.train.callbacks.base import Callback, CallbackList, LambdaCallback
from ember.train.callbacks.csv_logger import CSVLogger
from ember.train.callbacks.early_stopping import EarlyStopping
from ember.train.callbacks.history import History
from ember.train.callbacks.learning_rate_scheduler import LearningRateScheduler
from ember.train.callbacks.model_checkpoint import ModelCheckpoint
from ember.train.callbacks.monitor import MonitorCallback
from ember.train.callbacks.progress import ProgressBar
from ember.train.callbacks.reduce_lr_on_plateau import ReduceLROnPlateau
from ember.train.callbacks.tensorboard import TensorBoard
from ember.train.callbacks.terminate_on_nan import TerminateOnNaN

__all__ = ["BackupAndRestore", "Callback", "CallbackList", "CSVLogger", "EarlyStopping", "History", "LambdaCallback",
           "LearningRateScheduler", "ModelCheckpoint", "MonitorCallback", "ProgressBar", "ReduceLROnPlateau",
           "TensorBoard", "TerminateOnNaN"]
