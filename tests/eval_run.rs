//! Evaluation plumbing on the tiny model (random weights): real videos on
//! disk, a manifest, the judge, the report.

mod judge_data;

use judge_data::write_dataset;
use std::path::Path;
use std::sync::Arc;
use vgrpo::data::{Manifest, MosScale, Split};
use vgrpo::default_model::tiny_model;
use vgrpo::eval::judge::{JudgeInput, JudgeSettings, judge_batch};
use vgrpo::eval::report::{Metric, Undefined};
use vgrpo::eval::scatter::{SCATTER_FILE, scatter_size};
use vgrpo::eval::{EvalConfig, EvalData, EvalOutput, evaluate};
use vgrpo::inputs::InputSpec;
use vgrpo::loader::{Preparer, prepare_all};
use vgrpo::text::{AnswerOrder, Tokenizer};
use vgrpo::video::VideoConfig;

#[test]
fn eval_judges_every_test_row_and_reports_each_dimension() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest_path = write_dataset(tmp.path());
    let device = vgrpo::device::test_device();
    let model = tiny_model(0, &device).unwrap();
    let tokenizer = Tokenizer::tiny().unwrap();
    let spec = InputSpec::new(&model.config, &VideoConfig::default());
    let cfg = EvalConfig {
        batch: 3,
        max_new_tokens: 6,
        ..EvalConfig::default()
    };
    let manifest = Manifest::load(&manifest_path).unwrap();
    let test_rows = manifest.split(Split::Test).count();
    let data = EvalData::split(manifest, MosScale::default(), &cfg).unwrap();
    assert_eq!(data.rows.len(), test_rows);
    let out = evaluate(&model, &tokenizer, &spec, &data, &cfg, "tiny", &device).unwrap();
    assert_eq!(out.predictions.len(), test_rows);
    for p in &out.predictions {
        assert!((0.0..=1.0).contains(&p.score), "{p:?}");
        assert!((1.0..=5.0).contains(&p.mos_scale_score), "{p:?}");
        let total: f32 = p.rating_probs.iter().sum();
        assert!((total - 1.0).abs() < 1e-5);
        let answer = p
            .answer
            .as_ref()
            .expect("think-first answers are generated");
        assert!(answer.tokens <= 6);
        // Six tokens of a random model are no well-formed answer.
        assert!(answer.rating.is_none() && answer.violation.is_some());
    }
    let r = &out.report;
    assert_eq!(r.dimensions.len(), 3);
    assert_eq!(r.dimensions.iter().map(|d| d.n).sum::<usize>(), test_rows);
    for d in &r.dimensions {
        assert_eq!(d.answers.value().map(|a| a.format_rate), Some(0.0));
        // The fixture's clean scores keep the MOS order: ceiling 1.
        let ceiling = d.noise_ceiling_srcc.value().copied().unwrap();
        assert!((ceiling - 1.0).abs() < 1e-9, "{ceiling}");
        assert!(d.instance.value().is_some(), "{:?}", d.instance);
    }
    assert_eq!(r.failed_rows, 0);
    assert!(r.to_markdown().contains("| alignment |"));
    scatter_is_written_beside_the_report(&out, &tmp.path().join("eval"));

    // Rating-first without generation: the score only, no answer stats.
    let cfg = EvalConfig {
        order: AnswerOrder::RatingFirst,
        generate: false,
        ..cfg
    };
    let out = evaluate(&model, &tokenizer, &spec, &data, &cfg, "tiny", &device).unwrap();
    assert!(out.predictions.iter().all(|p| p.answer.is_none()));
    assert_eq!(
        out.report.dimensions[0].answers,
        Metric::Undefined(Undefined::NotMeasured)
    );
}

/// `EvalOutput::write` puts `scatter.png` beside the report files, a PNG of
/// one panel per dimension with the y = x line and the points drawn, and
/// `report.md` links it.
fn scatter_is_written_beside_the_report(out: &EvalOutput, dir: &Path) {
    out.write(dir).unwrap();
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains(&format!("]({SCATTER_FILE})")), "{md}");
    let file = std::fs::File::open(dir.join(SCATTER_FILE)).unwrap();
    let mut reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .unwrap();
    let mut rgb = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut rgb).unwrap();
    assert_eq!((frame.width, frame.height), scatter_size(3));
    assert_eq!(frame.color_type, png::ColorType::Rgb);
    let pixels = || rgb.chunks(3).map(|p| [p[0], p[1], p[2]]);
    // The reference line (antialiased: red-ish pixels) across three
    // panels, far more than the legend's 28-pixel sample of it.
    let red = pixels()
        .filter(|p| p[0] > 150 && p[1] < 150 && p[2] < 150)
        .count();
    assert!(red > 3 * 200, "{red} reference-line pixels");
    // The points: translucent blue over white.
    let blue = pixels().filter(|p| p[2] > 200 && p[0] < 180).count();
    assert!(blue > out.predictions.len() * 10, "{blue} point pixels");
}

/// Padding must not change a verdict: judging prompts of different lengths
/// together gives each the score it gets alone.
#[test]
fn batched_verdicts_equal_single_verdicts() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest_path = write_dataset(tmp.path());
    let device = vgrpo::device::test_device();
    let model = tiny_model(5, &device).unwrap();
    let tokenizer = Tokenizer::tiny().unwrap();
    let spec = InputSpec::new(&model.config, &VideoConfig::default());
    let manifest = Arc::new(Manifest::load(&manifest_path).unwrap());
    for order in [AnswerOrder::ThinkFirst, AnswerOrder::RatingFirst] {
        let preparer = Preparer {
            manifest: Arc::clone(&manifest),
            spec: Arc::new(spec.clone()),
            tokenizer: Arc::new(tokenizer.clone()),
            order,
        };
        // Rows 0 (visual) and 2 (alignment, a longer generation prompt).
        let examples: Vec<_> = prepare_all(preparer, vec![0, 2], 1, 2)
            .map(Result::unwrap)
            .collect();
        assert_ne!(examples[0].prompt_ids.len(), examples[1].prompt_ids.len());
        let settings = JudgeSettings {
            order,
            max_new_tokens: 5,
            generate: true,
        };
        let inputs: Vec<JudgeInput<'_>> = examples
            .iter()
            .map(|e| JudgeInput {
                prompt_ids: &e.prompt_ids,
                video: &e.video,
            })
            .collect();
        let together = judge_batch(&model, &tokenizer, &inputs, &settings, &device).unwrap();
        for (input, joint) in inputs.iter().zip(&together) {
            let alone = judge_batch(&model, &tokenizer, &[*input], &settings, &device).unwrap();
            let alone = &alone[0];
            assert_eq!(alone.completion, joint.completion, "{order:?}");
            for (a, b) in alone.rating_logits.iter().zip(joint.rating_logits) {
                assert!((a - b).abs() < 1e-4, "{order:?}: {alone:?} vs {joint:?}");
            }
            let c = joint.completion.as_ref().unwrap();
            if order == AnswerOrder::ThinkFirst {
                // A random model does not write </think> in 5 tokens; the
                // score is read after an appended one.
                assert!(!c.closed_think);
            }
        }
    }
}

/// `vgrpo eval` reads the manifest on the run's MOS scale: a MOS off
/// `[data.mos_min, data.mos_max]` is refused before the model loads, and
/// the same file passes on a scale that holds it.
#[test]
fn eval_refuses_a_mos_outside_the_configured_scale() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = tmp.path().join("m.jsonl");
    let row = |id: &str, mos: f32| {
        format!(
            r#"{{"id":"{id}","video":"{id}.mp4","prompt":"p","dimension":"visual","mos":{mos},"generator":"g"}}"#
        )
    };
    std::fs::write(&manifest, format!("{}\n{}\n", row("a", 3.5), row("b", 9.5))).unwrap();
    let config = |extra: &str| {
        let text = format!(
            "[run]\nout_dir = {:?}\n[data]\nmanifest = {:?}\n{extra}",
            tmp.path().join("runs").display().to_string(),
            manifest.display().to_string()
        );
        vgrpo::config::from_str(&tmp.path().join("c.toml"), &text, &[]).unwrap()
    };
    let err = vgrpo::eval::run_eval(
        &config(""),
        &vgrpo::device::test_device(),
        &Default::default(),
    )
    .unwrap_err();
    let e = vgrpo::errors::chain(&err);
    assert!(
        e.contains("m.jsonl:2: row \"b\" has MOS 9.5, outside the data set's MOS scale [1, 5]"),
        "{e}"
    );
    // On a 0–10 scale the manifest loads; eval then fails on the missing
    // videos, not on the MOS.
    let err = vgrpo::eval::run_eval(
        &config("mos_min = 0.0\nmos_max = 10.0\n"),
        &vgrpo::device::test_device(),
        &Default::default(),
    )
    .unwrap_err();
    let e = vgrpo::errors::chain(&err);
    assert!(
        matches!(err, vgrpo::eval::EvalError::AllFailed { failed: 2, .. }),
        "{e}"
    );
}
