//! manabi-align: reward models, DPO and PPO. Nothing here yet.
