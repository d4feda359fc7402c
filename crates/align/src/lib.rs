//! manabi-align
