//! manabi-objectives
