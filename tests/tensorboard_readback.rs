//! Every run directory holds TensorBoard event files that TensorBoard's own
//! loader (the PyPI `tensorboard` package, through
//! `tests/tensorboard/read_events.py`) reads back: each `metrics.jsonl`
//! number under its key path at the row's step, and the sampled rollouts of
//! each GRPO step as text. `$VGRPO_PYTHON` names the Python (default
//! `python3`); `scripts/test.sh` installs the package.

mod judge_data;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Scalars and texts as TensorBoard loads them from `run_dir`.
fn read_back(run_dir: &Path) -> serde_json::Value {
    let python = std::env::var("VGRPO_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tensorboard/read_events.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(run_dir)
        .output()
        .unwrap_or_else(|e| panic!("{python}: {e}"));
    assert!(
        out.status.success(),
        "{python} {}: {} (pip install tensorboard)",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every numeric leaf of a metrics row under its `/`-joined key path.
fn numbers(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, f64>) {
    match v {
        serde_json::Value::Object(m) => m.iter().for_each(|(k, v)| {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}/{k}")
            };
            numbers(&key, v, out);
        }),
        serde_json::Value::Number(n) => {
            out.insert(prefix.to_string(), n.as_f64().unwrap());
        }
        _ => {}
    }
}

#[test]
fn tensorboard_reads_every_metric_and_the_sampled_rollouts_of_a_grpo_run() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = judge_data::write_dataset(&tmp.path().join("data"));
    let config = tmp.path().join("tb.toml");
    std::fs::write(
        &config,
        format!(
            "[run]\nname = \"tb\"\nout_dir = \"{runs}\"\n[data]\nmanifest = \"{manifest}\"\n\
             [video]\nmax_frames = 4\ntoken_budget = 16\nworkers = 1\n\
             [grpo]\nsteps = 3\nprompts_per_step = 2\ngroup_size = 2\nmax_new_tokens = 6\n\
             rollouts_dir = \"{rollouts}\"\n",
            runs = tmp.path().join("runs").display(),
            manifest = manifest.display(),
            rollouts = tmp.path().join("rollouts").display(),
        ),
    )
    .unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_vgrpo"))
        .args(["train", "--config"])
        .arg(&config)
        .status()
        .unwrap();
    assert!(status.success());
    let run = tmp.path().join("runs/tb");
    let loaded = read_back(&run);

    let rows: Vec<serde_json::Value> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    let scalars = loaded["scalars"].as_object().unwrap();
    for row in &rows {
        let step = row["step"].as_u64().unwrap();
        let mut expected = BTreeMap::new();
        numbers("", row, &mut expected);
        expected.remove("step");
        for (tag, value) in expected {
            let series = scalars
                .get(&tag)
                .unwrap_or_else(|| panic!("no scalar {tag}; have {:?}", scalars.keys()));
            let at: Vec<f64> = series
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p[0].as_u64() == Some(step))
                .map(|p| p[1].as_f64().unwrap())
                .collect();
            assert_eq!(at.len(), 1, "{tag} at step {step}: {at:?}");
            // Scalars are f32 in the event file.
            assert_eq!(at[0] as f32, value as f32, "{tag} at step {step}");
        }
    }
    for tag in ["reward/mean", "kl", "entropy", "grad_norm", "timing_s/gen"] {
        assert!(scalars.contains_key(tag), "{tag}");
    }
    let texts = loaded["texts"]["rollouts"]
        .as_array()
        .expect("rollouts text");
    assert_eq!(texts.len(), 3, "one text per step");
    for (i, t) in texts.iter().enumerate() {
        assert_eq!(t[0].as_u64(), Some(i as u64 + 1));
        let text = t[1].as_str().unwrap();
        assert!(text.contains("label") && text.contains("R_fmt"), "{text}");
    }
}
