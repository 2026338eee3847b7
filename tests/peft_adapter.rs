//! PEFT LoRA adapters against peft 0.21 + transformers 5.23 on the tiny
//! fixtures (`tests/fixtures/make_lora_fixtures.py`): `lora_adapter/` is
//! what `save_pretrained` wrote, `lora_reference.safetensors` the PEFT
//! model's logits on the inputs of `reference.safetensors`.
//!
//! Logits are compared as in `tests/model_check.rs`: max |ours − ref| /
//! max |ref| over the unpadded positions, within 1e-4.
//!
//! With `VGRPO_PEFT_OUT=DIR` set, the tests also leave what vgrpo wrote
//! (`DIR/<arch>/adapter`, `DIR/<arch>/merged`, `DIR/<arch>/merged_bf16`)
//! for the fixture script's `--check-adapter` / `--check-export`.

use std::path::{Path, PathBuf};

use burn::tensor::{DType, FloatDType, Tensor};
use safetensors::{Dtype, SafeTensors};
use vgrpo::model::check::{Reference, check_loaded};
use vgrpo::model::lora::{Adapter, LoraConfig, LoraInit};
use vgrpo::model::{ModelError, QwenVl, load_adapter, save_adapter};
use vgrpo::model_source::{ModelConfig, ModelOrigin, load_model};

const TOLERANCE: f64 = 1e-4;
const ARCHS: [&str; 2] = ["qwen3_vl", "qwen2_5_vl"];

fn fixture(arch: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/{arch}_tiny"))
}

fn base(arch: &str) -> QwenVl {
    QwenVl::from_hf_dir(&fixture(arch), &vgrpo::device::test_device()).unwrap()
}

fn with_fixture_adapter(arch: &str) -> QwenVl {
    load_adapter(&fixture(arch).join("lora_adapter"), base(arch)).unwrap()
}

fn lora_reference(arch: &str) -> (Reference, PathBuf) {
    let path = fixture(arch).join("lora_reference.safetensors");
    (Reference::read(&path).unwrap(), path)
}

/// The relative logit error of `model` against the PEFT model's logits.
fn rel_error(model: &QwenVl, arch: &str) -> f64 {
    let (reference, path) = lora_reference(arch);
    let device = vgrpo::device::test_device();
    check_loaded(model, &reference, &path, TOLERANCE, &device)
        .unwrap()
        .rel_error
}

fn assert_matches_peft(model: &QwenVl, arch: &str, what: &str) {
    let rel = rel_error(model, arch);
    eprintln!("{arch}: {what}: rel error {rel:.3e} against peft");
    assert!(
        rel.is_finite() && rel <= TOLERANCE,
        "{arch}: {what}: {rel:.3e}"
    );
}

/// Where to leave an output for the Python checks, if asked to.
fn keep(arch: &str, name: &str, dir: &Path) {
    let Some(out) = std::env::var_os("VGRPO_PEFT_OUT") else {
        return;
    };
    let dest = Path::new(&out).join(arch).join(name);
    std::fs::create_dir_all(&dest).unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dest.join(path.file_name().unwrap())).unwrap();
    }
}

fn values(t: Tensor<2>) -> Vec<f32> {
    t.try_into_vec_as::<f32>().unwrap()
}

fn logits(model: &QwenVl, arch: &str) -> Vec<f32> {
    let device = vgrpo::device::test_device();
    let (reference, _) = lora_reference(arch);
    model
        .forward(&reference.batch(&device), &device)
        .unwrap()
        .try_into_vec_as::<f32>()
        .unwrap()
}

/// Every adapter of the model: (module, A, B, scale).
fn adapters(model: &QwenVl) -> Vec<(String, Vec<f32>, Vec<f32>, f64)> {
    let mut model = model.clone();
    model
        .projections_mut()
        .into_iter()
        .filter_map(|(name, p)| {
            p.adapter.as_ref().map(|a: &Adapter| {
                (
                    name,
                    values(a.lora_a.val()),
                    values(a.lora_b.val()),
                    a.scale,
                )
            })
        })
        .collect()
}

/// The vgrpo settings the fixture adapters were trained with (`r = 4`,
/// `α = 8`, the language model's seven projections).
fn fixture_lora() -> LoraConfig {
    LoraConfig {
        rank: 4,
        alpha: 8.0,
        init: LoraInit::Kaiming,
        ..LoraConfig::default()
    }
}

#[test]
fn fixture_adapters_reproduce_peft_logits_factored_and_merged() {
    for arch in ARCHS {
        let model = with_fixture_adapter(arch);
        let adapted = adapters(&model);
        assert_eq!(adapted.len(), 14, "{arch}: 2 layers × 7 projections");
        assert!(
            adapted
                .iter()
                .all(|(n, ..)| n.starts_with("model.language_model."))
        );
        // The adapter matters: the base alone is far from PEFT's logits.
        let base_rel = rel_error(&base(arch), arch);
        assert!(base_rel > 0.1, "{arch}: base rel error {base_rel:.3e}");
        assert_matches_peft(&model, arch, "factored adapter");
        assert_matches_peft(&model.merged(), arch, "merged adapter");
    }
}

#[test]
fn pattern_and_rslora_scales_follow_peft() {
    // Qwen3-VL: r = 4, α = 8; rank_pattern q_proj → 2, alpha_pattern down_proj → 16.
    for (name, _, b, scale) in adapters(&with_fixture_adapter("qwen3_vl")) {
        let (rank, want) = if name.ends_with("q_proj") {
            (2, 4.0)
        } else if name.ends_with("down_proj") {
            (4, 4.0)
        } else {
            (4, 2.0)
        };
        assert_eq!(scale, want, "{name}");
        assert_eq!(b.len() % rank, 0, "{name}");
    }
    // Qwen2.5-VL: use_rslora, α / √r = 8 / 2.
    for (name, .., scale) in adapters(&with_fixture_adapter("qwen2_5_vl")) {
        assert_eq!(scale, 4.0, "{name}");
    }
}

#[test]
fn saved_adapters_load_back_bit_identical() {
    let tmp = tempfile::tempdir().unwrap();
    for arch in ARCHS {
        let model = with_fixture_adapter(arch);
        let dir = tmp.path().join(arch).join("adapter");
        save_adapter(&model, &fixture_lora(), "tests/fixtures/tiny", &dir).unwrap();
        keep(arch, "adapter", &dir);
        let reloaded = load_adapter(&dir, base(arch)).unwrap();
        assert_eq!(adapters(&reloaded), adapters(&model), "{arch}");
        assert_eq!(logits(&reloaded, arch), logits(&model, arch), "{arch}");

        let config: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("adapter_config.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(config["peft_type"], "LORA");
        assert_eq!(config["r"], 4);
        assert_eq!(config["lora_alpha"], 8);
        assert_eq!(config["base_model_name_or_path"], "tests/fixtures/tiny");
        if arch == "qwen3_vl" {
            // The seven names reach no vision module of Qwen3-VL: the list stands.
            assert!(
                config["target_modules"].is_array(),
                "{}",
                config["target_modules"]
            );
        } else {
            // Qwen2.5-VL's tower has gate/up/down_proj: a regex instead.
            let re = config["target_modules"].as_str().unwrap();
            assert!(re.contains(r"language_model\.layers\.\d+"), "{re}");
            assert!(!re.contains("visual"), "{re}");
        }
        // Ranks other than r and scales other than α/rank are spelt out per
        // module: Qwen3-VL's q_proj (r 2) and down_proj (α 16), every
        // module of the rsLoRA Qwen2.5-VL adapter (α/√r = 4 = 16/r).
        let count = |key: &str| config[key].as_object().unwrap().len();
        let expected = if arch == "qwen3_vl" { [2, 2] } else { [0, 14] };
        assert_eq!(
            [count("rank_pattern"), count("alpha_pattern")],
            expected,
            "{arch}"
        );

        let bytes = std::fs::read(dir.join("adapter_model.safetensors")).unwrap();
        let file = SafeTensors::deserialize(&bytes).unwrap();
        let a = file
            .tensor("base_model.model.model.language_model.layers.1.mlp.up_proj.lora_A.weight")
            .unwrap();
        assert_eq!((a.dtype(), a.shape()), (Dtype::F32, &[4usize, 64][..]));
        assert_eq!(file.names().len(), 28);
    }
}

#[test]
fn merged_exports_reload_with_the_adapter_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let device = vgrpo::device::test_device();
    for arch in ARCHS {
        let model = with_fixture_adapter(arch);
        // export_hf merges the adapters itself.
        let dir = tmp.path().join(arch).join("merged");
        model.export_hf(None, &dir).unwrap();
        keep(arch, "merged", &dir);
        let reloaded = QwenVl::from_hf_dir(&dir, &device).unwrap();
        assert!(!reloaded.has_adapters());
        assert_matches_peft(&reloaded, arch, "merged export reloaded");
    }
}

/// Name → (dtype, shape, bytes) of every tensor of a safetensors file.
fn tensors(path: &Path) -> Vec<(String, Dtype, Vec<usize>, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<_> = file
        .tensors()
        .into_iter()
        .map(|(name, v)| (name, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn exports_keep_the_parameter_dtype() {
    let tmp = tempfile::tempdir().unwrap();
    let device = vgrpo::device::test_device();
    for arch in ARCHS {
        // f32 stays f32, byte for byte what transformers wrote.
        let f32_dir = tmp.path().join(arch).join("f32");
        base(arch).export_hf(None, &f32_dir).unwrap();
        let original = tensors(&fixture(arch).join("model.safetensors"));
        let exported = tensors(&f32_dir.join("model.safetensors"));
        assert_eq!(exported, original, "{arch}: f32 export");

        // bf16 parameters are written as BF16: half the bytes.
        let merged = with_fixture_adapter(arch).merged();
        let bf16 = merged.clone().with_float_dtype(FloatDType::BF16);
        let dir = tmp.path().join(arch).join("merged_bf16");
        bf16.export_hf(None, &dir).unwrap();
        keep(arch, "merged_bf16", &dir);
        let written = tensors(&dir.join("model.safetensors"));
        assert!(written.iter().all(|t| t.1 == Dtype::BF16), "{arch}");
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap())
                .unwrap();
        assert_eq!(config["dtype"], "bfloat16", "{arch}");
        let size = |d: &Path| {
            std::fs::metadata(d.join("model.safetensors"))
                .unwrap()
                .len()
        };
        assert!(
            size(&dir) * 10 < size(&f32_dir) * 6,
            "{arch}: bf16 {} vs f32 {} bytes",
            size(&dir),
            size(&f32_dir)
        );

        // It reloads (as f32) to exactly the bf16 values, and stays close
        // to PEFT's logits.
        let reloaded = QwenVl::from_hf_dir(&dir, &device).unwrap();
        let embed = |m: &QwenVl| m.model.language_model.embed_tokens.weight.val();
        assert_eq!(embed(&bf16).dtype(), DType::BF16);
        assert_eq!(
            values(embed(&reloaded)),
            values(embed(&bf16).cast(FloatDType::F32))
        );
        let rel = rel_error(&reloaded, arch);
        eprintln!("{arch}: bf16 merged export rel error {rel:.3e}");
        assert!(rel.is_finite() && rel <= 5e-2, "{arch}: {rel:.3e}");
    }
}

#[test]
fn model_config_adapter_is_merged_at_load() {
    let tmp = tempfile::tempdir().unwrap();
    let device = vgrpo::device::test_device();
    // A tiny-model adapter with non-zero B, written by vgrpo.
    let plain = load_model(&ModelConfig::default(), 5, &device).unwrap();
    let lora = LoraConfig {
        rank: 2,
        alpha: 4.0,
        ..LoraConfig::default()
    };
    let mut rng = vgrpo::rng::Rng::new(9);
    let (mut adapted, names) = plain.model.clone().with_fresh_adapters(&lora, &mut rng);
    assert!(!names.is_empty());
    for (_, proj) in adapted.projections_mut() {
        if let Some(a) = &mut proj.adapter {
            a.lora_b = a.lora_b.clone().map(|b| b.ones_like().mul_scalar(0.01));
        }
    }
    let dir = tmp.path().join("adapter");
    save_adapter(&adapted, &lora, "tiny", &dir).unwrap();

    let cfg = ModelConfig {
        adapter: Some(dir.clone()),
        ..ModelConfig::default()
    };
    let loaded = load_model(&cfg, 5, &device).unwrap();
    assert!(!loaded.model.has_adapters());
    assert_eq!(
        loaded.origin,
        ModelOrigin::WithAdapter {
            base: Box::new(ModelOrigin::Tiny(5)),
            adapter: dir.clone(),
        }
    );
    assert_eq!(
        loaded.origin.to_string(),
        format!("tiny model (seed 5) + adapter {}", dir.display())
    );
    let weight = |m: &QwenVl| {
        values(
            m.model.language_model.layers[0]
                .self_attn
                .q_proj
                .weight
                .val(),
        )
    };
    assert_eq!(weight(&loaded.model), weight(&adapted.clone().merged()));
    assert_ne!(weight(&loaded.model), weight(&plain.model));

    // On an autodiff device the merged weights are trainable leaves.
    let trainable = load_model(&cfg, 5, &device.clone().autodiff()).unwrap();
    let q = &trainable.model.model.language_model.layers[0]
        .self_attn
        .q_proj;
    assert!(q.weight.val().is_require_grad());

    // A missing adapter directory names the file.
    let missing = ModelConfig {
        adapter: Some(tmp.path().join("nowhere")),
        ..ModelConfig::default()
    };
    let err = vgrpo::errors::chain(&load_model(&missing, 5, &device).err().unwrap());
    assert!(err.contains("nowhere/adapter_config.json"), "{err}");
}

/// A copy of the Qwen3-VL fixture adapter with `edit` applied to its config.
fn edited(tmp: &Path, name: &str, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    let src = fixture("qwen3_vl").join("lora_adapter");
    let dir = tmp.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        src.join("adapter_model.safetensors"),
        dir.join("adapter_model.safetensors"),
    )
    .unwrap();
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("adapter_config.json")).unwrap())
            .unwrap();
    edit(&mut config);
    std::fs::write(dir.join("adapter_config.json"), config.to_string()).unwrap();
    dir
}

/// Rewrites the copy's weights: `edit` gets (key, shape, f32 values) and
/// returns the tensors to write.
fn rewrite_weights(
    dir: &Path,
    edit: impl FnOnce(Vec<(String, Vec<usize>, Vec<f32>)>) -> Vec<(String, Vec<usize>, Vec<f32>)>,
) {
    let path = dir.join("adapter_model.safetensors");
    let stored: Vec<_> = tensors(&path)
        .into_iter()
        .map(|(name, dtype, shape, bytes)| {
            assert_eq!(dtype, Dtype::F32);
            let values = bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            (name, shape, values)
        })
        .collect();
    let out: Vec<(String, Vec<usize>, Vec<u8>)> = edit(stored)
        .into_iter()
        .map(|(n, s, v)| (n, s, v.iter().flat_map(|x| x.to_le_bytes()).collect()))
        .collect();
    let views: Vec<_> = out
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &path).unwrap();
}

fn load_error(dir: &Path) -> String {
    let err: ModelError = load_adapter(dir, base("qwen3_vl")).expect_err("refused");
    vgrpo::errors::chain(&err)
}

#[test]
fn unsupported_adapters_are_refused_with_the_file_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    for (name, edit, expected) in [
        (
            "dora",
            Box::new(|c: &mut serde_json::Value| c["use_dora"] = true.into())
                as Box<dyn FnOnce(&mut serde_json::Value)>,
            "`use_dora` = true: DoRA adapters are not supported",
        ),
        (
            "bias",
            Box::new(|c| c["bias"] = "lora_only".into()),
            "`bias` = \"lora_only\"",
        ),
        (
            "modules_to_save",
            Box::new(|c| c["modules_to_save"] = serde_json::json!(["lm_head"])),
            "`modules_to_save` = [\"lm_head\"]",
        ),
        (
            "fan_in_fan_out",
            Box::new(|c| c["fan_in_fan_out"] = true.into()),
            "`fan_in_fan_out` = true",
        ),
        (
            "ia3",
            Box::new(|c| c["peft_type"] = "IA3".into()),
            "`peft_type` = \"IA3\": only LoRA adapters",
        ),
        (
            "pissa",
            Box::new(|c| c["init_lora_weights"] = "pissa".into()),
            "`init_lora_weights` = \"pissa\"",
        ),
        (
            "untargeted",
            Box::new(|c| c["target_modules"] = serde_json::json!(["q_proj"])),
            "does not select model.language_model.layers.0.mlp.down_proj",
        ),
    ] {
        let dir = edited(t, name, edit);
        let err = load_error(&dir);
        assert!(err.contains(expected), "{name}: {err}");
        assert!(
            err.contains(&format!("{name}/adapter_")),
            "{name}: names the file: {err}"
        );
    }

    // A missing factor names the key that is missing.
    let dir = edited(t, "missing", |_| {});
    rewrite_weights(&dir, |mut ts| {
        ts.retain(|(n, ..)| !n.ends_with("layers.1.self_attn.v_proj.lora_B.weight"));
        ts
    });
    let err = load_error(&dir);
    assert!(
        err.contains(
            "base_model.model.model.language_model.layers.1.self_attn.v_proj.lora_B.weight \
             is missing"
        ),
        "{err}"
    );
    assert!(err.contains("missing/adapter_model.safetensors"), "{err}");

    // A factor of the wrong shape names the key, the shapes and the rank.
    let dir = edited(t, "shape", |_| {});
    rewrite_weights(&dir, |ts| {
        ts.into_iter()
            .map(|(n, s, v)| {
                if n.ends_with("layers.0.mlp.up_proj.lora_A.weight") {
                    (n, vec![s[0], s[1] / 2], v[..v.len() / 2].to_vec())
                } else {
                    (n, s, v)
                }
            })
            .collect()
    });
    let err = load_error(&dir);
    assert!(
        err.contains(
            "tensor base_model.model.model.language_model.layers.0.mlp.up_proj.lora_A.weight: \
             shape [4, 32], expected [r, in] = [4, 64]"
        ),
        "{err}"
    );

    // A module the model does not have.
    let dir = edited(t, "unknown", |_| {});
    rewrite_weights(&dir, |ts| {
        ts.into_iter()
            .map(|(n, s, v)| (n.replace("layers.1.", "layers.7."), s, v))
            .collect()
    });
    let err = load_error(&dir);
    assert!(
        err.contains("the model has no projection model.language_model.layers.7."),
        "{err}"
    );

    // A missing weights file.
    let dir = edited(t, "no_weights", |_| {});
    std::fs::remove_file(dir.join("adapter_model.safetensors")).unwrap();
    let err = load_error(&dir);
    assert!(
        err.contains("cannot read") && err.contains("no_weights/adapter_model.safetensors"),
        "{err}"
    );
}
