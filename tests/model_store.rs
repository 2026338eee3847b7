//! Checkpoint formats: burnpack round trip (keeps parameter ids), HF
//! safetensors export/import, sharded and half-precision checkpoints, and
//! the error for mismatched weight names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use vgrpo::model::check::{Reference, check_loaded};
use vgrpo::model::store::{load_burnpack, save_burnpack};
use vgrpo::model::{ModelError, QwenVl};

fn fixture(arch: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/{arch}_tiny"))
}

fn logits(model: &QwenVl, arch: &str, device: &Device) -> Vec<f32> {
    let reference = Reference::read(&fixture(arch).join("reference.safetensors")).unwrap();
    model
        .forward(&reference.batch(device), device)
        .unwrap()
        .try_into_vec_as::<f32>()
        .unwrap()
}

#[test]
fn burnpack_round_trip_keeps_ids_and_values() {
    let device = vgrpo::device::test_device();
    for arch in ["qwen3_vl", "qwen2_5_vl"] {
        let model = QwenVl::from_hf_dir(&fixture(arch), &device).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.bpk");
        save_burnpack(&model, &path).unwrap();
        let fresh = QwenVl::new(&model.config, &device);
        assert_ne!(
            fresh.model.visual.patch_embed.proj.weight.id,
            model.model.visual.patch_embed.proj.weight.id
        );
        let loaded = load_burnpack(fresh, &path).unwrap();
        assert_eq!(
            loaded.model.visual.patch_embed.proj.weight.id,
            model.model.visual.patch_embed.proj.weight.id
        );
        assert_eq!(
            loaded.model.language_model.layers[1].mlp.up_proj.weight.id,
            model.model.language_model.layers[1].mlp.up_proj.weight.id
        );
        assert_eq!(
            logits(&loaded, arch, &device),
            logits(&model, arch, &device),
            "{arch}"
        );
    }
}

fn tensor_names(path: &Path) -> BTreeSet<String> {
    let bytes = std::fs::read(path).unwrap();
    SafeTensors::deserialize(&bytes)
        .unwrap()
        .names()
        .into_iter()
        .map(String::from)
        .collect()
}

#[test]
fn hf_export_writes_transformers_names_and_reloads() {
    let device = vgrpo::device::test_device();
    for arch in ["qwen3_vl", "qwen2_5_vl"] {
        let src = fixture(arch);
        let model = QwenVl::from_hf_dir(&src, &device).unwrap();
        let dir = tempfile::tempdir().unwrap();
        // config.json written from the parsed config (no source text).
        model.export_hf(None, dir.path()).unwrap();
        // Same tensor names (and so layout) as transformers' save_pretrained.
        assert_eq!(
            tensor_names(&dir.path().join("model.safetensors")),
            tensor_names(&src.join("model.safetensors")),
            "{arch}"
        );
        let reloaded = QwenVl::from_hf_dir(dir.path(), &device).unwrap();
        assert_eq!(
            logits(&reloaded, arch, &device),
            logits(&model, arch, &device),
            "{arch}"
        );
        // Developer hook: keep the export for the transformers reload check
        // (`make_qwen_fixtures.py --check-export DIR ARCH`).
        if let Some(keep) = std::env::var_os("VGRPO_KEEP_EXPORT") {
            let target = PathBuf::from(keep).join(arch);
            std::fs::create_dir_all(&target).unwrap();
            for file in ["model.safetensors", "config.json"] {
                std::fs::copy(dir.path().join(file), target.join(file)).unwrap();
            }
        }
    }
}

/// Splits the fixture into two shards with an index, the second in bf16.
#[test]
fn sharded_half_precision_checkpoints_load() {
    let device = vgrpo::device::test_device();
    let src = fixture("qwen2_5_vl");
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = file.names().into_iter().map(String::from).collect();
    names.sort();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(src.join("config.json"), dir.path().join("config.json")).unwrap();
    let (first, second) = names.split_at(names.len() / 2);
    let mut weight_map = BTreeMap::new();
    for (shard, part, half) in [
        ("model-00001-of-00002.safetensors", first, false),
        ("model-00002-of-00002.safetensors", second, true),
    ] {
        let mut owned = Vec::new();
        for name in part {
            let view = file.tensor(name).unwrap();
            let data: Vec<u8> = if half {
                view.data()
                    .chunks_exact(4)
                    .flat_map(|c| {
                        half::bf16::from_f32(f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                            .to_bits()
                            .to_le_bytes()
                    })
                    .collect()
            } else {
                view.data().to_vec()
            };
            owned.push((name.clone(), view.shape().to_vec(), data));
            weight_map.insert(name.clone(), shard.to_string());
        }
        let dtype = if half { Dtype::BF16 } else { Dtype::F32 };
        let views: Vec<(String, TensorView)> = owned
            .iter()
            .map(|(n, s, d)| (n.clone(), TensorView::new(dtype, s.clone(), d).unwrap()))
            .collect();
        safetensors::serialize_to_file(views, None, &dir.path().join(shard)).unwrap();
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();

    let model = QwenVl::from_hf_dir(dir.path(), &device).unwrap();
    let reference = Reference::read(&src.join("reference.safetensors")).unwrap();
    let report = check_loaded(&model, &reference, &src, 1e-4, &device).unwrap();
    eprintln!(
        "half of the weights in bf16: logits rel error {:.3e}",
        report.rel_error
    );
    // bf16 rounding (8 mantissa bits) moves the logits, but only by rounding.
    assert!(
        report.rel_error > 1e-6 && report.rel_error < 5e-2,
        "{}",
        report.rel_error
    );
}

#[test]
fn mismatched_checkpoints_list_missing_and_unexpected_names() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture("qwen3_vl").join("config.json"),
        dir.path().join("config.json"),
    )
    .unwrap();
    std::fs::copy(
        fixture("qwen2_5_vl").join("model.safetensors"),
        dir.path().join("model.safetensors"),
    )
    .unwrap();
    match QwenVl::from_hf_dir(dir.path(), &vgrpo::device::test_device()) {
        Err(ModelError::WeightNames {
            missing,
            unexpected,
        }) => {
            assert!(
                missing.contains(&"model.visual.pos_embed.weight".to_string()),
                "{missing:?}"
            );
            assert!(
                unexpected.contains(&"model.visual.merger.ln_q.weight".to_string()),
                "{unexpected:?}"
            );
        }
        other => panic!("expected a weight-name error, got {other:?}"),
    }
}
