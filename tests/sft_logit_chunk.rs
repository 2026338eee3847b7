//! SFT with the LM head in chunks of answer positions (`sft.logit_chunk`)
//! trains the same model as the one-shot loss, up to float rounding, with
//! a frozen-base LoRA run and a full fine-tuning run.

mod judge_data;

use std::path::Path;
use std::process::Command;

use safetensors::SafeTensors;

const BIN: &str = env!("CARGO_BIN_EXE_vgrpo");

fn run_sft(root: &Path, manifest: &Path, name: &str, chunk: usize, lora: bool) {
    let lora = if lora {
        "[lora]\nrank = 4\nalpha = 8.0\n"
    } else {
        ""
    };
    let text = format!(
        "[run]\nname = \"{name}\"\nseed = 5\nout_dir = \"{runs}\"\n\
         [data]\nmanifest = \"{manifest}\"\n\
         [video]\nfps = 8.0\nmin_frames = 2\nmax_frames = 4\ntoken_budget = 16\n\
         workers = 1\nqueue_depth = 2\n\
         [optim]\nlr = 1e-2\n{lora}\
         [sft]\nmax_steps = 3\nbatch = 2\ngrad_accum = 3\nlogit_chunk = {chunk}\n",
        runs = root.join("runs").display(),
        manifest = manifest.display(),
    );
    let config = root.join(format!("{name}.toml"));
    std::fs::write(&config, text).unwrap();
    let out = Command::new(BIN)
        .args(["sft", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every f32 weight of `final/model.safetensors`.
fn weights(root: &Path, name: &str) -> Vec<f32> {
    let bytes = std::fs::read(root.join(format!("runs/{name}/final/model.safetensors"))).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = file.names().into_iter().map(String::from).collect();
    names.sort();
    names
        .iter()
        .flat_map(|n| {
            file.tensor(n)
                .unwrap()
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn losses(root: &Path, name: &str) -> Vec<f64> {
    std::fs::read_to_string(root.join(format!("runs/{name}/metrics.jsonl")))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"]
                .as_f64()
                .unwrap()
        })
        .collect()
}

#[test]
fn chunked_sft_trains_the_one_shot_model() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let manifest = judge_data::write_dataset(&root.join("data"));
    for lora in [true, false] {
        let tag = if lora { "lora" } else { "full" };
        let (whole, chunked) = (format!("{tag}-whole"), format!("{tag}-chunked"));
        run_sft(root, &manifest, &whole, 0, lora);
        run_sft(root, &manifest, &chunked, 3, lora);
        let (a, b) = (losses(root, &whole), losses(root, &chunked));
        eprintln!("{tag}: losses {a:?} vs {b:?}");
        assert_eq!(a.len(), 3);
        // The first update's loss comes from the same weights: equal to
        // rounding. Later ones follow weights AdamW moved by gradients
        // equal to rounding; AdamW divides by √v, so in full fine-tuning a
        // parameter whose gradient is ~0 moves by a rounding-sized
        // difference and the runs drift apart a little.
        let first = (a[0] - b[0]).abs() / a[0].abs();
        assert!(first <= 1e-6, "{tag}: first loss {} vs {}", a[0], b[0]);
        let drift = if lora { 1e-5 } else { 1e-3 };
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() <= drift * x.abs(), "{tag}: loss {x} vs {y}");
        }
        let (wa, wb) = (weights(root, &whole), weights(root, &chunked));
        assert_eq!(wa.len(), wb.len());
        let norm = wa.iter().map(|x| x * x).sum::<f32>().sqrt();
        let diff = wa
            .iter()
            .zip(&wb)
            .map(|(x, y)| (x - y) * (x - y))
            .sum::<f32>()
            .sqrt();
        eprintln!("{tag}: ‖Δw‖ / ‖w‖ = {:.2e}", diff / norm);
        // The chunked path really ran (an answer is wider than 3 tokens):
        // its head gradient is summed in another order, so some bits differ.
        assert_ne!(wa, wb, "{tag}: the chunked run took the one-shot path");
        assert!(
            f64::from(diff / norm) < drift,
            "{tag}: weights differ by {}",
            diff / norm
        );
    }
}
