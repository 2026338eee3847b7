//! The evaluation report: per-video predictions aggregated per dimension and
//! overall, as JSON and as a markdown table.
//!
//! Per dimension: SRCC/PLCC/KRCC at instance level (videos) and model level
//! (means per generator); pairwise preference accuracy with and without
//! ties; format-following rate and exact-rating accuracy of the greedy
//! answers; and, when every row has a noise-free `clean_mos` (synthetic
//! data), the noise ceiling SRCC(clean_mos, mos): the SRCC a perfect judge
//! of the clean score would reach against the noisy labels.
//!
//! Overall: each correlation and accuracy averaged over the dimensions
//! where it is defined (the paper reports per-dimension numbers and their
//! mean), answer statistics pooled over all rows.

use super::metrics::{
    AnswerStats, Correlations, MetricError, PairwiseAccuracy, PairwiseConfig,
    aggregate_by_generator, answer_stats, correlations, pairwise_accuracy, srcc,
};
use crate::data::{Dimension, MosScale, Rating};
use crate::text::{Answer, FormatViolation};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// One judged row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    pub id: String,
    pub dimension: Dimension,
    pub generator: String,
    pub mos: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clean_mos: Option<f32>,
    /// `MosScale::rating(mos)`.
    pub label: Rating,
    /// Softmax-expectation score in [0, 1].
    pub score: f32,
    /// The score on the MOS scale, `m + score·(M − m)`.
    pub mos_scale_score: f32,
    /// Probabilities of Bad … Excellent at the rating position.
    pub rating_probs: [f32; 5],
    /// The greedy answer, when one was generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<AnswerRecord>,
}

/// What the judge wrote, checked against the answer format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnswerRecord {
    pub text: String,
    /// The rating of a well-formed answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rating: Option<Rating>,
    /// Why the answer is not well formed (absent when it is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub violation: Option<String>,
    /// Think-first: the model closed its think block itself.
    pub closed_think: bool,
    pub tokens: usize,
}

impl AnswerRecord {
    pub fn new(
        text: String,
        answer: &Result<Answer, FormatViolation>,
        closed_think: bool,
        tokens: usize,
    ) -> Self {
        AnswerRecord {
            text,
            rating: answer.as_ref().ok().map(|a| a.rating),
            violation: answer.as_ref().err().map(ToString::to_string),
            closed_think,
            tokens,
        }
    }

    fn parsed(&self) -> Result<Answer, FormatViolation> {
        match self.rating {
            Some(rating) => Ok(Answer {
                rationale: String::new(),
                rating,
            }),
            None => Err(FormatViolation::Empty),
        }
    }
}

/// A metric value, or why it is undefined on this data (e.g. a judge that
/// gives every video the same score has no rank correlation).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric<T> {
    Value(T),
    Undefined(Undefined),
}

/// Why a metric is undefined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Undefined {
    ConstantPrediction,
    ConstantTruth,
    TooFewItems,
    NoPairs,
    NotMeasured,
}

impl<T> Metric<T> {
    fn from_result(r: Result<T, MetricError>) -> Self {
        match r {
            Ok(v) => Metric::Value(v),
            Err(MetricError::Constant { which: "predicted" }) => {
                Metric::Undefined(Undefined::ConstantPrediction)
            }
            Err(MetricError::Constant { .. }) => Metric::Undefined(Undefined::ConstantTruth),
            Err(MetricError::NoPairs) => Metric::Undefined(Undefined::NoPairs),
            Err(_) => Metric::Undefined(Undefined::TooFewItems),
        }
    }

    pub fn value(&self) -> Option<&T> {
        match self {
            Metric::Value(v) => Some(v),
            Metric::Undefined(_) => None,
        }
    }
}

/// Everything measured on one dimension.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DimensionReport {
    pub dimension: Dimension,
    /// Rows judged.
    pub n: usize,
    pub instance: Metric<Correlations>,
    pub model_level: Metric<Correlations>,
    pub pairwise: Metric<PairwiseAccuracy>,
    pub answers: Metric<AnswerStats>,
    /// Think-first answers that never closed their think block.
    pub unclosed_think: usize,
    /// SRCC(clean_mos, mos), when every row has `clean_mos`.
    pub noise_ceiling_srcc: Metric<f64>,
    /// Mean predicted score on the MOS scale and mean MOS (calibration).
    pub mean_pred_mos: f64,
    pub mean_mos: f64,
}

/// Means over the dimensions where each metric is defined.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OverallReport {
    pub n: usize,
    pub srcc: Option<f64>,
    pub plcc: Option<f64>,
    pub krcc: Option<f64>,
    pub model_srcc: Option<f64>,
    pub model_plcc: Option<f64>,
    pub model_krcc: Option<f64>,
    pub pairwise_with_ties: Option<f64>,
    pub pairwise_without_ties: Option<f64>,
    pub noise_ceiling_srcc: Option<f64>,
    /// Pooled over all rows.
    pub format_rate: Option<f64>,
    pub exact_rating_accuracy: Option<f64>,
}

/// The whole evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Which model was evaluated (a path or "tiny model (seed N)").
    pub model: String,
    pub order: crate::text::AnswerOrder,
    pub scale: MosScale,
    pub pairwise_config: PairwiseConfig,
    pub dimensions: Vec<DimensionReport>,
    pub overall: OverallReport,
    /// Rows whose video could not be prepared (left out, named in the log).
    pub failed_rows: usize,
    pub seconds: f64,
}

/// Aggregates predictions. `pairwise.pred_tie_threshold` is on the [0, 1]
/// score scale (Q-Save: 0.05) and `truth_tie_threshold` on the MOS scale;
/// pairs are compared on the MOS scale, the former scaled by `M − m`.
pub fn aggregate(
    predictions: &[Prediction],
    scale: MosScale,
    pairwise: PairwiseConfig,
) -> (Vec<DimensionReport>, OverallReport) {
    let mut dims = Vec::new();
    for dimension in Dimension::ALL {
        let rows: Vec<&Prediction> = predictions
            .iter()
            .filter(|p| p.dimension == dimension)
            .collect();
        if !rows.is_empty() {
            dims.push(dimension_report(dimension, &rows, scale, pairwise));
        }
    }
    let mean = |f: &dyn Fn(&DimensionReport) -> Option<f64>| {
        let values: Vec<f64> = dims.iter().filter_map(f).collect();
        (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
    };
    let all: Vec<&Prediction> = predictions.iter().collect();
    let pooled = answer_metric(&all);
    let overall = OverallReport {
        n: predictions.len(),
        srcc: mean(&|d| d.instance.value().map(|c| c.srcc)),
        plcc: mean(&|d| d.instance.value().map(|c| c.plcc)),
        krcc: mean(&|d| d.instance.value().map(|c| c.krcc)),
        model_srcc: mean(&|d| d.model_level.value().map(|c| c.srcc)),
        model_plcc: mean(&|d| d.model_level.value().map(|c| c.plcc)),
        model_krcc: mean(&|d| d.model_level.value().map(|c| c.krcc)),
        pairwise_with_ties: mean(&|d| d.pairwise.value().map(|p| p.with_ties)),
        pairwise_without_ties: mean(&|d| d.pairwise.value().and_then(|p| p.without_ties)),
        noise_ceiling_srcc: mean(&|d| d.noise_ceiling_srcc.value().copied()),
        format_rate: pooled.value().map(|a| a.format_rate),
        exact_rating_accuracy: pooled.value().map(|a| a.exact_rating_accuracy),
    };
    (dims, overall)
}

fn answer_metric(rows: &[&Prediction]) -> Metric<AnswerStats> {
    let answered: Vec<(Result<Answer, FormatViolation>, Rating)> = rows
        .iter()
        .filter_map(|p| p.answer.as_ref().map(|a| (a.parsed(), p.label)))
        .collect();
    if answered.len() < rows.len() || answered.is_empty() {
        return Metric::Undefined(Undefined::NotMeasured);
    }
    let (answers, labels): (Vec<_>, Vec<_>) = answered.into_iter().unzip();
    Metric::from_result(answer_stats(&answers, &labels))
}

fn dimension_report(
    dimension: Dimension,
    rows: &[&Prediction],
    scale: MosScale,
    pairwise: PairwiseConfig,
) -> DimensionReport {
    let pred: Vec<f64> = rows.iter().map(|p| f64::from(p.mos_scale_score)).collect();
    let truth: Vec<f64> = rows.iter().map(|p| f64::from(p.mos)).collect();
    let generators: Vec<&str> = rows.iter().map(|p| p.generator.as_str()).collect();
    let model_level = Metric::from_result(
        aggregate_by_generator(&pred, &truth, &generators).and_then(|l| l.correlations()),
    );
    let on_mos_scale = PairwiseConfig {
        pred_tie_threshold: pairwise.pred_tie_threshold * f64::from(scale.max - scale.min),
        truth_tie_threshold: pairwise.truth_tie_threshold,
    };
    let clean: Option<Vec<f64>> = rows.iter().map(|p| p.clean_mos.map(f64::from)).collect();
    let noise_ceiling_srcc = match clean {
        Some(clean) => Metric::from_result(srcc(&clean, &truth)),
        None => Metric::Undefined(Undefined::NotMeasured),
    };
    let n = rows.len();
    DimensionReport {
        dimension,
        n,
        instance: Metric::from_result(correlations(&pred, &truth)),
        model_level,
        pairwise: Metric::from_result(pairwise_accuracy(&pred, &truth, &on_mos_scale)),
        answers: answer_metric(rows),
        unclosed_think: rows
            .iter()
            .filter(|p| p.answer.as_ref().is_some_and(|a| !a.closed_think))
            .count(),
        noise_ceiling_srcc,
        mean_pred_mos: pred.iter().sum::<f64>() / n as f64,
        mean_mos: truth.iter().sum::<f64>() / n as f64,
    }
}

impl EvalReport {
    /// The report as a markdown table (one row per dimension, then the
    /// mean), with the settings below it.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| dimension | n | SRCC (ceiling) | PLCC | KRCC | model SRCC | model PLCC | model KRCC | \
             pair acc w/ ties | pair acc w/o ties | format | exact |"
        );
        let _ = writeln!(
            out,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for d in &self.dimensions {
            let inst = d.instance.value();
            let model = d.model_level.value();
            let pair = d.pairwise.value();
            let answers = d.answers.value();
            let ceiling = d
                .noise_ceiling_srcc
                .value()
                .map_or(String::new(), |c| format!(" ({c:.3})"));
            let _ = writeln!(
                out,
                "| {} | {} | {}{} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                d.dimension,
                d.n,
                cell(inst.map(|c| c.srcc)),
                ceiling,
                cell(inst.map(|c| c.plcc)),
                cell(inst.map(|c| c.krcc)),
                cell(model.map(|c| c.srcc)),
                cell(model.map(|c| c.plcc)),
                cell(model.map(|c| c.krcc)),
                cell(pair.map(|p| p.with_ties)),
                cell(pair.and_then(|p| p.without_ties)),
                cell(answers.map(|a| a.format_rate)),
                cell(answers.map(|a| a.exact_rating_accuracy)),
            );
        }
        let o = &self.overall;
        let ceiling = o
            .noise_ceiling_srcc
            .map_or(String::new(), |c| format!(" ({c:.3})"));
        let _ = writeln!(
            out,
            "| **mean** | {} | {}{} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            o.n,
            cell(o.srcc),
            ceiling,
            cell(o.plcc),
            cell(o.krcc),
            cell(o.model_srcc),
            cell(o.model_plcc),
            cell(o.model_krcc),
            cell(o.pairwise_with_ties),
            cell(o.pairwise_without_ties),
            cell(o.format_rate),
            cell(o.exact_rating_accuracy),
        );
        let _ = writeln!(
            out,
            "\nmodel: {} · answers: {:?} · MOS scale {}–{} · tie threshold {} (score) / {} (MOS) · \
             {} rows failed to load · {:.1} s",
            self.model,
            self.order,
            self.scale.min,
            self.scale.max,
            self.pairwise_config.pred_tie_threshold,
            self.pairwise_config.truth_tie_threshold,
            self.failed_rows,
            self.seconds
        );
        out
    }
}

/// A table cell: three decimals, or `–` when undefined.
fn cell(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_string(), |v| format!("{v:.3}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pred(
        id: &str,
        dimension: Dimension,
        generator: &str,
        mos: f32,
        score: f32,
        rating: Option<Rating>,
    ) -> Prediction {
        let scale = MosScale::default();
        Prediction {
            id: id.into(),
            dimension,
            generator: generator.into(),
            mos,
            clean_mos: Some(mos + 0.1),
            label: scale.rating(mos),
            score,
            mos_scale_score: scale.denormalise(score),
            rating_probs: [0.2; 5],
            answer: Some(AnswerRecord {
                text: String::new(),
                rating,
                violation: rating.is_none().then(|| "no rating".into()),
                closed_think: rating.is_some(),
                tokens: 3,
            }),
        }
    }

    /// Visual: 4 videos, 2 generators. MOS (1, 2, 4, 5), scores
    /// (0.1, 0.3, 0.2, 0.9) → MOS-scale (1.4, 2.2, 1.8, 4.6).
    /// Ranks pred (1, 3, 2, 4) vs truth (1, 2, 3, 4): Σd² = 2,
    /// SRCC = 1 − 6·2/(4·15) = 0.8. Kendall: pairs (12 C, 13 C, 14 C,
    /// 23 D, 24 C, 34 C) → (5 − 1)/6 = 2/3.
    /// Generators: a = {1, 2} → pred mean 1.8, truth 1.5; b = {3, 4} →
    /// pred 3.2, truth 4.5: two points, correlations 1.
    /// Pairwise (pred threshold 0.05·4 = 0.2 on the MOS scale): |Δp| per
    /// pair 12: 0.8, 13: 0.4, 14: 3.2, 23: 0.4, 24: 2.4, 34: 2.8 — no
    /// predicted tie; signs agree except 23 → 5/6 with and without ties.
    /// Answers: 3 well formed, all naming their label (Bad, Poor, Good for
    /// MOS 1, 2, 4; the 4th is malformed): format 3/4, exact 3/4.
    #[test]
    fn aggregation_by_hand() {
        use Dimension::*;
        use Rating::*;
        let rows = vec![
            pred("v1", Visual, "a", 1.0, 0.1, Some(Bad)),
            pred("v2", Visual, "a", 2.0, 0.3, Some(Poor)),
            pred("v3", Visual, "b", 4.0, 0.2, Some(Good)),
            pred("v4", Visual, "b", 5.0, 0.9, None),
            // Dynamic: every score equal → correlations undefined.
            pred("d1", Dynamic, "a", 1.0, 0.5, Some(Fair)),
            pred("d2", Dynamic, "b", 3.0, 0.5, Some(Fair)),
        ];
        let (dims, overall) = aggregate(&rows, MosScale::default(), PairwiseConfig::default());
        assert_eq!(dims.len(), 2);
        let v = &dims[0];
        assert_eq!((v.dimension, v.n), (Visual, 4));
        let c = v.instance.value().unwrap();
        assert!((c.srcc - 0.8).abs() < 1e-12, "{c:?}");
        assert!((c.krcc - 2.0 / 3.0).abs() < 1e-12, "{c:?}");
        let m = v.model_level.value().unwrap();
        assert_eq!(m.n, 2);
        assert!((m.srcc - 1.0).abs() < 1e-12 && (m.plcc - 1.0).abs() < 1e-12);
        let p = v.pairwise.value().unwrap();
        assert_eq!((p.pairs, p.predicted_ties, p.truth_ties), (6, 0, 0));
        assert!((p.with_ties - 5.0 / 6.0).abs() < 1e-12);
        assert_eq!(p.without_ties, Some(5.0 / 6.0));
        let a = v.answers.value().unwrap();
        assert_eq!((a.format_rate, a.exact_rating_accuracy), (0.75, 0.75));
        assert_eq!(v.unclosed_think, 1);
        // clean_mos = mos + 0.1 keeps the order: ceiling 1.
        assert!((v.noise_ceiling_srcc.value().unwrap() - 1.0).abs() < 1e-12);
        assert!((v.mean_mos - 3.0).abs() < 1e-12);

        let d = &dims[1];
        assert_eq!(d.instance, Metric::Undefined(Undefined::ConstantPrediction));
        // Equal scores are a predicted tie; the MOS differ: 0/1 with ties.
        let p = d.pairwise.value().unwrap();
        assert_eq!((p.with_ties, p.without_ties), (0.0, Some(0.0)));

        // Means over the dimensions that define each metric.
        assert!((overall.srcc.unwrap() - 0.8).abs() < 1e-12);
        assert!((overall.pairwise_with_ties.unwrap() - 5.0 / 12.0).abs() < 1e-12);
        // Pooled answers: 5 of 6 well formed; exact: v1, v2, d2? d2 label
        // is Fair (MOS 3) → 4 of 6.
        assert!((overall.format_rate.unwrap() - 5.0 / 6.0).abs() < 1e-12);
        assert!((overall.exact_rating_accuracy.unwrap() - 4.0 / 6.0).abs() < 1e-12);
        assert_eq!(overall.n, 6);
    }

    #[test]
    fn markdown_has_a_row_per_dimension_and_marks_undefined() {
        use Dimension::*;
        let rows = vec![
            pred("v1", Visual, "a", 1.0, 0.1, None),
            pred("v2", Visual, "b", 2.0, 0.3, None),
            pred("d1", Dynamic, "a", 1.0, 0.5, None),
            pred("d2", Dynamic, "b", 3.0, 0.5, None),
        ];
        let scale = MosScale::default();
        let (dimensions, overall) = aggregate(&rows, scale, PairwiseConfig::default());
        let report = EvalReport {
            model: "m".into(),
            order: crate::text::AnswerOrder::ThinkFirst,
            scale,
            pairwise_config: PairwiseConfig::default(),
            dimensions,
            overall,
            failed_rows: 0,
            seconds: 1.0,
        };
        let md = report.to_markdown();
        let lines: Vec<&str> = md.lines().collect();
        assert!(
            lines[2].starts_with("| visual | 2 | 1.000 (1.000) |"),
            "{md}"
        );
        assert!(lines[3].starts_with("| dynamic | 2 | – (1.000) |"), "{md}");
        assert!(lines[4].starts_with("| **mean** | 4 | 1.000"), "{md}");
        let json = serde_json::to_string(&report).unwrap();
        let back: EvalReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back, report);
    }
}
