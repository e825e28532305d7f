"""rtrec: the domain core of the real-time recommendation service.

Pure logic shared by the Lambda functions and the offline model build: event
schema, user-state fold, feature encoding, TFLite scorer and ranking rules.
"""

__version__ = "0.1.0"
