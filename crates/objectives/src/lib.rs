//! manabi-objectives: pre-training objectives (CLM, MLM, span corruption) and the Trainer. Nothing here yet (issue #4).
