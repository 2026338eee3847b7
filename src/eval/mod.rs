//! Evaluation of a judge against human scores: correlation metrics,
//! model-level aggregation, pairwise preference accuracy, answer statistics.

pub mod bootstrap;
pub mod config;
pub mod judge;
pub mod metrics;
pub mod report;
pub mod run;
pub mod scatter;

pub use bootstrap::{PairedDifference, PairedScores, paired_srcc_difference};
pub use config::EvalConfig;
pub use metrics::{
    AnswerStats, Correlations, MetricError, ModelLevel, PairwiseAccuracy, PairwiseConfig,
    aggregate_by_generator, answer_stats, correlations, krcc, pairwise_accuracy,
    pairwise_accuracy_within, plcc, srcc,
};
pub use report::{EvalReport, Prediction};
pub use run::{
    EvalData, EvalError, EvalJob, EvalOutput, Judgement, ScoreRequest, evaluate, evaluate_until,
    run_eval, score_video,
};
