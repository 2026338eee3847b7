//! SFT on the tiny model: the batch layout puts targets and the rating
//! position where they belong, a few updates lower the loss, and a run
//! checkpoints, resumes exactly and exports a loadable model.

mod judge_data;

use burn::optim::GradientsParams;
use judge_data::write_dataset;
use std::path::Path;
use vgrpo::checkpoint::Resume;
use vgrpo::data::{Manifest, MosScale};
use vgrpo::default_model::tiny_model;
use vgrpo::inputs::InputSpec;
use vgrpo::model_source::{ModelConfig, load_model};
use vgrpo::optim::{OptimConfig, Optimizer, StepOutcome};
use vgrpo::sft::data::{SftSample, cold_start_items, prepare_sample, sft_tensors};
use vgrpo::sft::{SftStepMetrics, micro_batch_loss, run_sft};
use vgrpo::sft_loss::SftLossConfig;
use vgrpo::text::{AnswerOrder, RatingSite, Tokenizer};
use vgrpo::video::VideoConfig;

fn samples(manifest_path: &Path, tokenizer: &Tokenizer) -> Vec<SftSample> {
    let manifest = Manifest::load(manifest_path).unwrap();
    let (items, skipped) = cold_start_items(&manifest, MosScale::default());
    assert_eq!((items.len(), skipped), (3, 0));
    let config = vgrpo::default_model::tiny_config().unwrap();
    let spec = InputSpec::new(&config, &VideoConfig::default());
    items
        .iter()
        .map(|item| {
            prepare_sample(&manifest, item, &spec, tokenizer, AnswerOrder::ThinkFirst).unwrap()
        })
        .collect()
}

#[test]
fn batch_layout_aligns_targets_and_the_rating_position() {
    let tmp = tempfile::tempdir().unwrap();
    let tokenizer = Tokenizer::tiny().unwrap();
    let mut samples = samples(&write_dataset(tmp.path()), &tokenizer);
    // Different lengths, so left padding matters.
    samples[1].ids.insert(0, tokenizer.special().endoftext);
    samples[1].target_mask.insert(0, false);
    samples[1].rating_index += 1;
    let device = vgrpo::device::test_device();
    let special = tokenizer.special();
    let t = sft_tensors(&samples, special.endoftext, special.video_pad, &device);
    let [b, w] = t.targets.dims();
    assert_eq!(b, 3);
    let targets = t.targets.clone().try_into_vec_as::<i64>().unwrap();
    let mask = t
        .mask
        .clone()
        .int()
        .try_into_vec_as::<i64>()
        .unwrap()
        .into_iter()
        .map(|m| m != 0)
        .collect::<Vec<bool>>();
    let positions = t.rating_positions.clone().try_into_vec_as::<i64>().unwrap();
    let rating_ids = tokenizer.ratings().ids(RatingSite::AfterThink);
    for (r, s) in samples.iter().enumerate() {
        let row_targets = &targets[r * w..(r + 1) * w];
        let row_mask = &mask[r * w..(r + 1) * w];
        // The trained targets are exactly the sample's answer + <|im_end|>.
        let trained: Vec<u32> = row_targets
            .iter()
            .zip(row_mask)
            .filter(|(_, m)| **m)
            .map(|(&id, _)| id as u32)
            .collect();
        let want: Vec<u32> = s
            .ids
            .iter()
            .zip(&s.target_mask)
            .filter(|(_, m)| **m)
            .map(|(&id, _)| id)
            .collect();
        assert_eq!(trained, want);
        assert_eq!(*trained.last().unwrap(), special.im_end);
        // The rating position predicts the rating token.
        let rating = row_targets[positions[r] as usize] as u32;
        assert!(rating_ids.contains(&rating), "row {r}: {rating}");
        assert_eq!(rating, s.ids[s.rating_index]);
    }
    assert_eq!(t.answer_tokens, mask.iter().filter(|&&m| m).count());
}

#[test]
fn a_few_updates_lower_the_loss_on_a_fixed_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let tokenizer = Tokenizer::tiny().unwrap();
    let samples = samples(&write_dataset(tmp.path()), &tokenizer);
    let device = vgrpo::device::test_device().autodiff();
    let mut model = tiny_model(0, &device).unwrap();
    let mut optimizer = Optimizer::new(&OptimConfig {
        lr: 3e-3,
        weight_decay: 0.0,
        ..OptimConfig::default()
    });
    let special = tokenizer.special();
    let rating_ids = tokenizer.ratings().ids(RatingSite::AfterThink);
    let loss_cfg = SftLossConfig::default();
    let mut history = Vec::new();
    for _ in 0..8 {
        let t = sft_tensors(&samples, special.endoftext, special.video_pad, &device);
        let out = micro_batch_loss(&model, t, rating_ids, &loss_cfg, &device).unwrap();
        history.push(out.metrics);
        let grads = GradientsParams::from_grads(out.loss.backward(), &model);
        let (m, outcome) = optimizer.step(model, grads, 3e-3).unwrap();
        assert!(matches!(outcome, StepOutcome::Applied(_)));
        model = m;
    }
    let (first, last) = (history[0], history[history.len() - 1]);
    // A fresh model is near uniform: CE ≈ ln(1050) ≈ 6.96.
    assert!((first.ce - 1050f32.ln()).abs() < 0.5, "{first:?}");
    assert!(last.loss < 0.7 * first.loss, "{history:?}");
    assert!(last.ce < first.ce, "{history:?}");
}

fn config(dir: &Path, manifest: &Path, name: &str, max_steps: u64) -> vgrpo::config::Config {
    let text = format!(
        "[run]\nname = \"{name}\"\nout_dir = \"{}\"\n[data]\nmanifest = \"{}\"\n\
         [optim]\nlr = 3e-3\nweight_decay = 0.0\n\
         [sft]\nbatch = 1\ngrad_accum = 2\nmax_steps = {max_steps}\ncheckpoint_every = 1\n",
        dir.display(),
        manifest.display()
    );
    vgrpo::config::from_str(Path::new("sft.toml"), &text, &[]).unwrap()
}

/// An interrupt flag nothing sets.
fn never() -> std::sync::atomic::AtomicBool {
    std::sync::atomic::AtomicBool::new(false)
}

fn metrics(run: &Path) -> Vec<SftStepMetrics> {
    vgrpo::jsonl::read_rows(&run.join("metrics.jsonl")).unwrap()
}

#[test]
fn run_resumes_exactly_and_exports_a_loadable_model() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = write_dataset(&tmp.path().join("data"));
    let runs = tmp.path().join("runs");
    let device = vgrpo::device::test_device();

    let straight = run_sft(
        &config(&runs, &manifest, "straight", 3),
        &Resume::No,
        &device,
        &never(),
    )
    .unwrap();
    assert_eq!(straight.steps, 3);
    assert_eq!(straight.items, 3);

    run_sft(
        &config(&runs, &manifest, "split", 2),
        &Resume::No,
        &device,
        &never(),
    )
    .unwrap();
    // Starting again without --resume refuses to overwrite the run.
    let err = run_sft(
        &config(&runs, &manifest, "split", 3),
        &Resume::No,
        &device,
        &never(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("--resume auto"), "{err}");
    let resumed = run_sft(
        &config(&runs, &manifest, "split", 3),
        &Resume::Auto,
        &device,
        &never(),
    )
    .unwrap();
    assert_eq!(resumed.steps, 3);

    let a = metrics(&runs.join("straight"));
    let b = metrics(&runs.join("split"));
    assert_eq!(a.len(), 3);
    assert_eq!(b.len(), 3);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!((x.step, x.loss, x.ce, x.mse), (y.step, y.loss, y.ce, y.mse));
        assert_eq!((x.lr, x.grad_norm), (y.lr, y.grad_norm));
    }

    let cfg = ModelConfig {
        path: Some(straight.final_dir.clone()),
        ..Default::default()
    };
    let a = load_model(&cfg, 0, &device).unwrap();
    let cfg = ModelConfig {
        path: Some(resumed.final_dir.clone()),
        ..Default::default()
    };
    let b = load_model(&cfg, 0, &device).unwrap();
    let w = |m: &vgrpo::model::QwenVl| {
        m.model
            .language_model
            .embed_tokens
            .weight
            .val()
            .try_into_vec_as::<f32>()
            .unwrap()
    };
    assert_eq!(
        w(&a.model),
        w(&b.model),
        "resumed weights equal straight weights"
    );
    assert_ne!(
        w(&a.model),
        w(&tiny_model(0, &device).unwrap()),
        "training moved the weights"
    );
}

#[test]
fn cool_off_trains_rating_first_answers_joined_to_the_manifest() {
    use vgrpo::cooloff::{CoolOffRow, Provenance};
    use vgrpo::eval::report::Metric;
    use vgrpo::eval::{EvalConfig, EvalData, evaluate};
    let tmp = tempfile::tempdir().unwrap();
    let manifest_path = write_dataset(&tmp.path().join("data"));
    let manifest = Manifest::load(&manifest_path).unwrap();
    let scale = MosScale::default();
    // Two harvested answers for the same train row, one for another.
    let rows: Vec<CoolOffRow> = ["v5-visual", "v5-visual", "v5-dynamic"]
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let row = manifest.rows.iter().find(|r| r.id == *id).unwrap();
            let label = scale.rating(row.mos);
            CoolOffRow::new(
                "Judge it.",
                format!("{}<think>the square looks fine</think>", label.word()),
                Provenance {
                    id: row.id.clone(),
                    // As GRPO writes it: resolved against the manifest.
                    video: manifest.video_path(row),
                    dimension: row.dimension,
                    label,
                    mos: row.mos,
                    reward: 1.5,
                    step: 1,
                    group: i as u64,
                    sample: 0,
                },
            )
        })
        .collect();
    let items = vgrpo::sft::data::cooloff_items(&manifest, &rows, scale).unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(items[0].row, items[1].row);
    assert!(items[0].answer.starts_with(items[0].rating.word()));
    let mut bad = rows.clone();
    bad[2].id = "nope".into();
    let err = vgrpo::sft::data::cooloff_items(&manifest, &bad, scale).unwrap_err();
    assert!(err.to_string().contains("row 3 (\"nope\")"), "{err}");
    // A rollout of another set's video under a known id (synthetic sets all
    // number from v0000) is refused, not trained on this set's video.
    let mut other = rows.clone();
    other[1].video = tmp.path().join("other/videos/v5.mp4");
    let err = vgrpo::sft::data::cooloff_items(&manifest, &other, scale).unwrap_err();
    assert!(
        err.to_string()
            .contains("row 2 (\"v5-visual\") is a rollout of")
            && err.to_string().contains("grpo.manifest"),
        "{err}"
    );
    // So is a row harvested at another MOS (the manifest was edited since).
    let mut edited = rows.clone();
    edited[0].mos = edited[0].mos.map(|m| m + 0.5);
    let err = vgrpo::sft::data::cooloff_items(&manifest, &edited, scale).unwrap_err();
    assert!(
        err.to_string()
            .contains("row 1 (\"v5-visual\") was harvested at MOS"),
        "{err}"
    );
    // A file written before rows recorded their MOS still joins.
    let mut old = rows.clone();
    old.iter_mut().for_each(|r| r.mos = None);
    assert_eq!(
        vgrpo::sft::data::cooloff_items(&manifest, &old, scale).unwrap(),
        items
    );

    let cooloff = tmp.path().join("cooloff.jsonl");
    let mut w = vgrpo::jsonl::JsonlWriter::create(&cooloff).unwrap();
    for r in &rows {
        w.append(r).unwrap();
    }
    let text = format!(
        "[run]\nname = \"cool\"\nout_dir = \"{}\"\n[data]\nmanifest = \"{}\"\n\
         [optim]\nlr = 3e-3\nweight_decay = 0.0\n\
         [sft]\nmode = \"cool-off\"\ncooloff = \"{}\"\nbatch = 3\nepochs = 4\n",
        tmp.path().join("runs").display(),
        manifest_path.display(),
        cooloff.display()
    );
    let cfg = vgrpo::config::from_str(Path::new("c.toml"), &text, &[]).unwrap();
    let device = vgrpo::device::test_device();
    let summary = run_sft(&cfg, &Resume::No, &device, &never()).unwrap();
    assert_eq!((summary.steps, summary.items), (4, 3));
    let m = metrics(&summary.run_dir);
    assert!(m[3].loss < m[0].loss, "{m:?}");

    // The cool-off model is judged rating-first.
    let loaded = load_model(
        &ModelConfig {
            path: Some(summary.final_dir),
            ..Default::default()
        },
        0,
        &device,
    )
    .unwrap();
    let eval = EvalConfig {
        order: AnswerOrder::RatingFirst,
        max_new_tokens: 8,
        ..EvalConfig::default()
    };
    let data = EvalData::split(manifest, scale, &eval).unwrap();
    let spec = InputSpec::new(&loaded.model.config, &VideoConfig::default());
    let out = evaluate(
        &loaded.model,
        &loaded.tokenizer,
        &spec,
        &data,
        &eval,
        "cool",
        &device,
    )
    .unwrap();
    assert_eq!(out.predictions.len(), 6);
    assert!(matches!(out.report.dimensions[0].answers, Metric::Value(_)));
}
