//! Turning a job's committed tasks into a dataset: whole-job dedup, the manifest (the truth of
//! which files form the dataset) and the dataset card.

pub mod card;
pub mod dedup;
pub mod dedup_plan;
pub mod failures;
pub mod manifest;
