//! PEFT LoRA adapters in and out: the `adapter_config.json` +
//! `adapter_model.safetensors` directory that `peft`'s `save_pretrained`
//! writes and `PeftModel.from_pretrained` reads (LLaMA-Factory, TRL and
//! verl hand their LoRA results on in it).
//!
//! The tensors are keyed `base_model.model.<module>.lora_A.weight` `[r, in]`
//! and `…lora_B.weight` `[out, r]` (torch layout), `<module>` the HF module
//! name; PEFT 0.21 on transformers 5 writes the canonical names
//! (`model.language_model.layers.0.self_attn.q_proj`) for Qwen2.5-VL too,
//! and older adapters in the legacy layout (`model.layers.*`, `visual.*`)
//! are mapped with [`canonical_name`]. An [`Adapter`] holds the transposes
//! (`A` `[in, r]`, `B` `[r, out]`). The scale is PEFT's: `α/r`, or `α/√r`
//! with `use_rslora`, where `r` and `α` come from the first
//! `rank_pattern` / `alpha_pattern` key that matches the module (PEFT's
//! `(.*\.)?(key)$`), else `r` and `lora_alpha`.
//!
//! Refused, with the file and key named: another `peft_type`, DoRA,
//! trained biases (`bias` ≠ `"none"`, `lora_bias`), `modules_to_save`,
//! `fan_in_fan_out`, initialisations that rewrite the base weights (PiSSA,
//! OLoRA, CorDA, LoftQ, LoRA-GA), the variants that change the forward
//! (aLoRA, Arrow, layer replication, trainable tokens, targeted
//! parameters, …), tensors that are not LoRA factors of a projection
//! (embedding adapters, saved embedding layers), unknown modules and shape
//! mismatches.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use burn::tensor::Tensor;
use safetensors::Dtype;
use safetensors::tensor::TensorView;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{ModelError, Result};
use super::lora::{Adapter, LoraConfig, LoraInit};
use super::qwen_vl::QwenVl;
use super::weights::{canonical_name, parse_file, read_file, to_f32, transpose};
use crate::checkpoint::{DirIoError, replace_dir};

/// The adapter's config file in its directory.
pub const CONFIG_FILE: &str = "adapter_config.json";
/// The adapter's weights file in its directory.
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";
/// What PEFT puts before the module name of every key.
const KEY_PREFIX: &str = "base_model.model.";

impl From<DirIoError> for ModelError {
    fn from(e: DirIoError) -> Self {
        ModelError::Io {
            path: e.path,
            source: e.source,
        }
    }
}

/// Which factor a key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Factor {
    A,
    B,
}

/// The module and factor of a PEFT key: `base_model.model.<module>.lora_A.weight`
/// (or with the default adapter name, `…lora_A.default.weight`, which PEFT
/// also loads) → (canonical module name, factor). `Err` says why the key is
/// not a LoRA factor.
pub fn parse_key(key: &str) -> std::result::Result<(String, Factor), String> {
    let Some(rest) = key.strip_prefix(KEY_PREFIX) else {
        return Err(format!(
            "not a PEFT key: expected {KEY_PREFIX}<module>.lora_A.weight or .lora_B.weight"
        ));
    };
    for (suffix, factor) in [
        (".lora_A.weight", Factor::A),
        (".lora_B.weight", Factor::B),
        (".lora_A.default.weight", Factor::A),
        (".lora_B.default.weight", Factor::B),
    ] {
        if let Some(module) = rest.strip_suffix(suffix) {
            return Ok((canonical_name(module), factor));
        }
    }
    Err(if rest.contains("lora_magnitude_vector") {
        "a DoRA magnitude vector: only plain LoRA adapters are supported".into()
    } else if rest.contains("lora_embedding_") {
        "a LoRA factor of an embedding: vgrpo adapts linear projections only".into()
    } else if rest.contains(".lora_") {
        "an unknown LoRA tensor: expected lora_A.weight or lora_B.weight".into()
    } else {
        "a full weight, not a LoRA factor (modules_to_save or save_embedding_layers \
         write these): not supported"
            .into()
    })
}

/// The PEFT key of `module`'s factor (canonical module name, no adapter name).
pub fn peft_key(module: &str, factor: Factor) -> String {
    let f = match factor {
        Factor::A => "lora_A",
        Factor::B => "lora_B",
    };
    format!("{KEY_PREFIX}{module}.{f}.weight")
}

/// A JSON object read with its keys in file order (PEFT takes the first
/// matching pattern, in the dict's order).
#[derive(Debug, Default)]
struct Ordered(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object or null")
            }
            fn visit_unit<E>(self) -> std::result::Result<Ordered, E> {
                Ok(Ordered::default())
            }
            fn visit_none<E>(self) -> std::result::Result<Ordered, E> {
                Ok(Ordered::default())
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> std::result::Result<Ordered, M::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry::<String, Value>()? {
                    out.push(entry);
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_any(Visit)
    }
}

#[derive(Deserialize)]
struct Patterns {
    #[serde(default)]
    rank_pattern: Ordered,
    #[serde(default)]
    alpha_pattern: Ordered,
}

/// PEFT's `target_modules`.
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    /// A module is targeted when its name equals an entry or ends with
    /// `.entry`.
    List(Vec<String>),
    /// A module is targeted when the regex matches its whole name.
    Regex(String),
}

impl Targets {
    /// Whether PEFT targets the module `name`. `None`: a regex vgrpo's
    /// regex engine cannot read (look-around, back-references).
    pub fn selects(&self, name: &str) -> Option<bool> {
        match self {
            Targets::List(list) => Some(list.iter().any(|t| suffix_match(t, name))),
            Targets::Regex(re) => regex::Regex::new(&format!("^(?:{re})$"))
                .ok()
                .map(|r| r.is_match(name)),
        }
    }
}

/// PEFT's list rule: `name == pattern` or `name` ends with `.pattern`.
fn suffix_match(pattern: &str, name: &str) -> bool {
    name == pattern || name.strip_suffix(pattern).is_some_and(|s| s.ends_with('.'))
}

/// What `adapter_config.json` says about the factors' scales.
#[derive(Debug, Clone)]
pub struct PeftLoraConfig {
    pub r: usize,
    pub lora_alpha: f64,
    pub use_rslora: bool,
    /// `(regex key, r)` in file order.
    pub rank_pattern: Vec<(String, usize)>,
    /// `(regex key, α)` in file order.
    pub alpha_pattern: Vec<(String, f64)>,
    pub target_modules: Option<Targets>,
}

impl PeftLoraConfig {
    /// Reads and checks `dir/adapter_config.json`.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| ModelError::Io {
            path: path.clone(),
            source,
        })?;
        let err = |message: String| ModelError::Adapter {
            path: path.clone(),
            message,
        };
        let json = |source| ModelError::ConfigJson {
            path: path.clone(),
            source,
        };
        let value: Value = serde_json::from_str(&text).map_err(json)?;
        let Value::Object(fields) = &value else {
            return Err(err("expected a JSON object".into()));
        };
        let get = |key: &str| field(fields, key);
        match get("peft_type").and_then(Value::as_str) {
            Some("LORA") => {}
            Some(other) => {
                return Err(err(format!(
                    "`peft_type` = {other:?}: only LoRA adapters (\"LORA\") are supported"
                )));
            }
            None => return Err(err("`peft_type` is missing: is this a PEFT adapter?".into())),
        }
        refuse_unsupported(fields).map_err(err)?;

        let r = get("r")
            .and_then(Value::as_u64)
            .filter(|&r| r > 0)
            .ok_or_else(|| err("`r` must be a positive integer".into()))? as usize;
        let lora_alpha = match get("lora_alpha") {
            None => 8.0, // PEFT's default
            Some(v) => v
                .as_f64()
                .ok_or_else(|| err(format!("`lora_alpha` must be a number, got {v}")))?,
        };
        let use_rslora = flag(fields, "use_rslora").map_err(err)?;
        let target_modules = match get("target_modules") {
            None => None,
            Some(Value::String(s)) => Some(Targets::Regex(s.clone())),
            Some(Value::Array(items)) => Some(Targets::List(
                items
                    .iter()
                    .map(|v| {
                        v.as_str().map(str::to_string).ok_or_else(|| {
                            err(format!("`target_modules` entries must be strings, got {v}"))
                        })
                    })
                    .collect::<Result<_>>()?,
            )),
            Some(v) => {
                return Err(err(format!(
                    "`target_modules` must be a list or a regex string, got {v}"
                )));
            }
        };
        let patterns: Patterns = serde_json::from_str(&text).map_err(json)?;
        let rank_pattern = patterns
            .rank_pattern
            .0
            .into_iter()
            .map(|(k, v)| match v.as_u64().filter(|&r| r > 0) {
                Some(r) => Ok((k, r as usize)),
                None => Err(err(format!(
                    "`rank_pattern` {k:?}: the rank must be a positive integer, got {v}"
                ))),
            })
            .collect::<Result<Vec<_>>>()?;
        let alpha_pattern = patterns
            .alpha_pattern
            .0
            .into_iter()
            .map(|(k, v)| match v.as_f64() {
                Some(a) => Ok((k, a)),
                None => Err(err(format!(
                    "`alpha_pattern` {k:?}: alpha must be a number, got {v}"
                ))),
            })
            .collect::<Result<Vec<_>>>()?;
        let keys = rank_pattern.iter().map(|(k, _)| k);
        for key in keys.chain(alpha_pattern.iter().map(|(k, _)| k)) {
            if pattern_regex(key).is_none() {
                return Err(err(format!(
                    "pattern key {key:?} is not a regex vgrpo can read"
                )));
            }
        }
        Ok(PeftLoraConfig {
            r,
            lora_alpha,
            use_rslora,
            rank_pattern,
            alpha_pattern,
            target_modules,
        })
    }

    /// `(r, α/r or α/√r)` of the module `name`, as PEFT's `get_pattern_key`
    /// picks them.
    pub fn rank_and_scale(&self, name: &str) -> (usize, f64) {
        let r = first_match(&self.rank_pattern, name).unwrap_or(self.r);
        let alpha = first_match(&self.alpha_pattern, name).unwrap_or(self.lora_alpha);
        let scale = if self.use_rslora {
            alpha / (r as f64).sqrt()
        } else {
            alpha / r as f64
        };
        (r, scale)
    }
}

/// The value of the first pattern key that matches `name`.
fn first_match<T: Copy>(patterns: &[(String, T)], name: &str) -> Option<T> {
    patterns
        .iter()
        .find(|(key, _)| pattern_regex(key).is_some_and(|re| re.is_match(name)))
        .map(|(_, v)| *v)
}

/// PEFT's `re.match(rf"(.*\.)?({key})$", name)`.
fn pattern_regex(key: &str) -> Option<regex::Regex> {
    regex::Regex::new(&format!(r"^(?:.*\.)?(?:{key})$")).ok()
}

type Fields = serde_json::Map<String, Value>;

/// A field of the config, `None` when absent or null.
fn field<'a>(fields: &'a Fields, key: &str) -> Option<&'a Value> {
    fields.get(key).filter(|v| !v.is_null())
}

/// A boolean field, false when absent.
fn flag(fields: &Fields, key: &str) -> std::result::Result<bool, String> {
    match field(fields, key) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(format!("`{key}` must be true or false, got {v}")),
    }
}

/// The settings whose adapters vgrpo's `x·W + b + s·(x·A)·B` does not
/// compute, each with the reason.
fn refuse_unsupported(fields: &Fields) -> std::result::Result<(), String> {
    let get = |key: &str| field(fields, key);
    if flag(fields, "use_dora")? {
        return Err("`use_dora` = true: DoRA adapters are not supported, only plain LoRA".into());
    }
    match get("bias").and_then(Value::as_str) {
        None | Some("none") => {}
        Some(other) => {
            return Err(format!(
                "`bias` = {other:?}: the adapter trained the base biases, which vgrpo does not \
                 load; only \"none\" is supported"
            ));
        }
    }
    if flag(fields, "lora_bias")? {
        return Err("`lora_bias` = true: a bias on lora_B is not supported".into());
    }
    if flag(fields, "fan_in_fan_out")? {
        return Err(
            "`fan_in_fan_out` = true (GPT-2 Conv1D weights) is not supported: Qwen-VL \
             projections are nn.Linear"
                .into(),
        );
    }
    if let Some(m) = get("modules_to_save")
        && m.as_array().is_none_or(|a| !a.is_empty())
    {
        return Err(format!(
            "`modules_to_save` = {m}: full copies of trained modules are not supported \
             (merge them into the base model instead)"
        ));
    }
    if flag(fields, "use_qalora")? {
        return Err("`use_qalora` = true: QALoRA adapters are not supported".into());
    }
    if let Some(init) = get("init_lora_weights").and_then(Value::as_str) {
        let lower = init.to_ascii_lowercase();
        if ["pissa", "olora", "corda", "loftq", "lora_ga"]
            .iter()
            .any(|p| lower.starts_with(p))
        {
            return Err(format!(
                "`init_lora_weights` = {init:?}: this initialisation rewrites the base weights, \
                 so the adapter only fits that changed base; convert it to a plain LoRA \
                 adapter first (PEFT's save_pretrained(path_initial_model_for_weight_conversion=…))"
            ));
        }
    }
    for (key, what) in [
        ("layer_replication", "layer replication"),
        ("trainable_token_indices", "trainable tokens"),
        ("alora_invocation_tokens", "activated LoRA (aLoRA)"),
        (
            "target_parameters",
            "LoRA on parameters (target_parameters)",
        ),
        ("arrow_config", "Arrow routing"),
        ("use_bdlora", "block-diagonal LoRA"),
        ("kasa_config", "KaSA"),
        ("velora_config", "VeLoRA"),
        ("monteclora_config", "MonteCLoRA"),
    ] {
        let set = match get(key) {
            None | Some(Value::Bool(false)) => false,
            Some(Value::Array(a)) => !a.is_empty(),
            Some(Value::Object(o)) => !o.is_empty(),
            Some(_) => true,
        };
        if set {
            return Err(format!("`{key}` is set: {what} is not supported"));
        }
    }
    Ok(())
}

/// One key's tensor: its name in the file, HF shape, f32 values.
struct Stored {
    key: String,
    shape: Vec<usize>,
    values: Vec<f32>,
}

/// Reads the PEFT LoRA adapter in `dir` (`adapter_config.json` +
/// `adapter_model.safetensors`) and attaches its factors (f32; f16 and
/// bf16 converted) to the projections they name. The base parameters are
/// left as they are (trainable or not); call [`QwenVl::merged`] to fold the
/// adapter in. Fails, naming the file and the key, on every setting and
/// tensor the adapter forward would not reproduce (see the module doc),
/// on a module the model does not have or `target_modules` does not
/// select, on a factor without its partner, and on a shape or rank that
/// does not fit. A model that already carries adapters is refused.
pub fn load_adapter(dir: &Path, model: QwenVl) -> Result<QwenVl> {
    let config = PeftLoraConfig::read(dir)?;
    let path = dir.join(WEIGHTS_FILE);
    let err = |message: String| ModelError::Adapter {
        path: path.clone(),
        message,
    };
    if model.has_adapters() {
        return Err(err(
            "the model already carries adapters: merge them first (QwenVl::merged)".into(),
        ));
    }
    let bytes = read_file(&path)?;
    let file = parse_file(&path, &bytes)?;
    let mut factors: BTreeMap<String, [Option<Stored>; 2]> = BTreeMap::new();
    let mut keys: Vec<&str> = file.names();
    keys.sort_unstable();
    for key in keys {
        let (module, factor) = parse_key(key).map_err(|why| err(format!("tensor {key}: {why}")))?;
        let view = file
            .tensor(key)
            .map_err(|e| err(format!("tensor {key}: {e}")))?;
        let values = to_f32(view.dtype(), view.data()).ok_or_else(|| {
            err(format!(
                "tensor {key}: dtype {:?}, expected f32, f16 or bf16",
                view.dtype()
            ))
        })?;
        let slot = &mut factors.entry(module).or_default()[factor as usize];
        if let Some(first) = slot {
            return Err(err(format!(
                "tensors {} and {key} hold the same factor",
                first.key
            )));
        }
        *slot = Some(Stored {
            key: key.to_string(),
            shape: view.shape().to_vec(),
            values,
        });
    }
    if factors.is_empty() {
        return Err(err("the file holds no LoRA factors".into()));
    }

    let mut model = model;
    let mut projections = model.projections_mut();
    let example = projections
        .first()
        .map(|(n, _)| n.clone())
        .unwrap_or_default();
    for (module, [a, b]) in factors {
        let (a, b) = match (a, b) {
            (Some(a), Some(b)) => (a, b),
            (Some(one), None) | (None, Some(one)) => {
                let missing = if one.key.contains(".lora_A.") {
                    peft_key(&module, Factor::B)
                } else {
                    peft_key(&module, Factor::A)
                };
                return Err(err(format!(
                    "tensor {} has no partner: {missing} is missing",
                    one.key
                )));
            }
            (None, None) => unreachable!("a module is entered with a factor"),
        };
        let Some((_, proj)) = projections.iter_mut().find(|(n, _)| *n == module) else {
            return Err(err(format!(
                "tensor {}: the model has no projection {module} (names look like {example})",
                a.key
            )));
        };
        if let Some(targets) = &config.target_modules {
            let original = a.key[KEY_PREFIX.len()..]
                .split(".lora_")
                .next()
                .unwrap_or_default();
            let selected = [module.as_str(), original]
                .iter()
                .map(|n| targets.selects(n))
                .collect::<Option<Vec<bool>>>();
            match selected {
                Some(s) if !s.contains(&true) => {
                    return Err(err(format!(
                        "tensor {}: target_modules {targets:?} in {CONFIG_FILE} does not select \
                         {module}, so PEFT would not load it",
                        a.key
                    )));
                }
                Some(_) => {}
                None => log::warn!(
                    "{}: target_modules regex is beyond vgrpo's regex engine; not checked",
                    dir.join(CONFIG_FILE).display()
                ),
            }
        }
        let [d_in, d_out] = proj.dims();
        let (r, scale) = config.rank_and_scale(&module);
        for (stored, expected, dims) in [(&a, [r, d_in], "[r, in]"), (&b, [d_out, r], "[out, r]")] {
            if stored.shape != expected {
                return Err(err(format!(
                    "tensor {}: shape {:?}, expected {dims} = {expected:?} ({module} is \
                     [in, out] = [{d_in}, {d_out}]; r = {r} from {CONFIG_FILE})",
                    stored.key, stored.shape
                )));
            }
        }
        let device = proj.weight.lazy_device();
        proj.adapter = Some(Adapter::from_values(
            transpose(&a.values, r, d_in),
            transpose(&b.values, d_out, r),
            [d_in, r, d_out],
            scale,
            &device,
        ));
    }
    drop(projections);
    Ok(model)
}

/// One adapter of the model, on the host.
struct Saved {
    name: String,
    rank: usize,
    scale: f64,
    /// `[r, in]` (PEFT layout) as little-endian f32 bytes.
    a: Vec<u8>,
    /// `[out, r]`
    b: Vec<u8>,
    d_in: usize,
    d_out: usize,
}

fn host(t: Tensor<2>, name: &str) -> Result<Vec<f32>> {
    t.try_into_vec_as::<f32>()
        .map_err(|e| ModelError::Readback(format!("{name}: {e:?}")))
}

fn le_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Writes the adapters of `model` as a PEFT LoRA directory `dir`
/// (replaced whole: complete or absent): `adapter_config.json` with the
/// fields PEFT writes for `lora` (rank, α, its init; `task_type`
/// `CAUSAL_LM`; `base_model_name_or_path` as given) and
/// `adapter_model.safetensors` (f32, PEFT key names, HF shapes).
///
/// `target_modules` is `lora.targets` when PEFT's suffix rule picks
/// exactly the adapted projections from the model's modules; otherwise
/// (the vision tower is left out but a pattern also names a vision module,
/// as `gate_proj` does on Qwen2.5-VL) a regex that PEFT full-matches
/// against exactly the adapted names. An adapter whose rank or scale is not
/// `lora`'s gets a `rank_pattern` / `alpha_pattern` entry of its own.
pub fn save_adapter(
    model: &QwenVl,
    lora: &LoraConfig,
    base_model_name_or_path: &str,
    dir: &Path,
) -> Result<()> {
    let mut model = model.clone();
    let mut saved = Vec::new();
    let mut all_names = Vec::new();
    for (name, proj) in model.projections_mut() {
        all_names.push(name.clone());
        let Some(adapter) = &proj.adapter else {
            continue;
        };
        let [d_in, rank] = adapter.lora_a.lazy_shape().dims::<2>();
        let [_, d_out] = adapter.lora_b.lazy_shape().dims::<2>();
        let a = host(adapter.lora_a.val(), &name)?;
        let b = host(adapter.lora_b.val(), &name)?;
        saved.push(Saved {
            rank,
            scale: adapter.scale,
            a: le_bytes(&transpose(&a, d_in, rank)),
            b: le_bytes(&transpose(&b, rank, d_out)),
            d_in,
            d_out,
            name,
        });
    }
    let weights_path = dir.join(WEIGHTS_FILE);
    if saved.is_empty() {
        return Err(ModelError::Adapter {
            path: weights_path,
            message: "the model carries no adapters to save".into(),
        });
    }
    let adapted: BTreeSet<String> = saved.iter().map(|s| s.name.clone()).collect();
    let mut candidates = all_names.clone();
    candidates.extend(other_modules(&model));
    let target_modules = target_modules(&lora.targets, &adapted, &candidates, &all_names);

    let mut rank_pattern = serde_json::Map::new();
    let mut alpha_pattern = serde_json::Map::new();
    for s in &saved {
        let key = regex::escape(&s.name);
        if s.rank != lora.rank {
            rank_pattern.insert(key.clone(), json!(s.rank));
        }
        let implied = lora.alpha / s.rank as f64;
        if (s.scale - implied).abs() > 1e-12 * implied.abs() {
            alpha_pattern.insert(key, number(s.scale * s.rank as f64));
        }
    }
    let config = json!({
        "alpha_pattern": alpha_pattern,
        "auto_mapping": null,
        "base_model_name_or_path": base_model_name_or_path,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": match lora.init {
            LoraInit::Kaiming => json!(true),
            LoraInit::Gaussian => json!("gaussian"),
        },
        "layers_pattern": null,
        "layers_to_transform": null,
        "lora_alpha": number(lora.alpha),
        "lora_dropout": lora.dropout,
        "modules_to_save": null,
        "peft_type": "LORA",
        "r": lora.rank,
        "rank_pattern": rank_pattern,
        "revision": null,
        "target_modules": target_modules,
        "task_type": "CAUSAL_LM",
        "use_dora": false,
        "use_rslora": false,
    });
    let config_text = serde_json::to_string_pretty(&config).expect("a JSON value serialises");

    replace_dir(dir, |tmp| {
        let target = tmp.join(WEIGHTS_FILE);
        let safetensors_err = |message: String| ModelError::Safetensors {
            path: target.clone(),
            message,
        };
        let mut tensors = Vec::with_capacity(2 * saved.len());
        for s in &saved {
            for (factor, shape, bytes) in [
                (Factor::A, vec![s.rank, s.d_in], &s.a),
                (Factor::B, vec![s.d_out, s.rank], &s.b),
            ] {
                let key = peft_key(&s.name, factor);
                let view = TensorView::new(Dtype::F32, shape, bytes)
                    .map_err(|e| safetensors_err(format!("{key}: {e}")))?;
                tensors.push((key, view));
            }
        }
        let metadata = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
        safetensors::serialize_to_file(tensors, Some(metadata), &target)
            .map_err(|e| safetensors_err(e.to_string()))?;
        let config_path = tmp.join(CONFIG_FILE);
        std::fs::write(&config_path, &config_text).map_err(|source| ModelError::Io {
            path: config_path,
            source,
        })
    })
}

/// An integral float as a JSON integer (as PEFT writes `lora_alpha = 16`).
fn number(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        json!(x as i64)
    } else {
        json!(x)
    }
}

/// The model's modules besides its projections that PEFT could adapt
/// (linear, embedding and convolution layers), by their HF names.
fn other_modules(model: &QwenVl) -> Vec<String> {
    let mut names = vec![
        "lm_head".to_string(),
        "model.language_model.embed_tokens".to_string(),
        "model.visual.patch_embed.proj".to_string(),
    ];
    if model.config.arch == super::config::Arch::Qwen3Vl {
        names.push("model.visual.pos_embed".to_string());
    }
    names
}

/// `patterns` when PEFT's suffix rule over `candidates` (every module it
/// could adapt) selects exactly `adapted` and each pattern names an adapted
/// module; else a regex PEFT full-matches against exactly `adapted`.
/// `projections` are all projection names (to see which layer sets are
/// whole).
fn target_modules(
    patterns: &[String],
    adapted: &BTreeSet<String>,
    candidates: &[String],
    projections: &[String],
) -> Value {
    let picked: BTreeSet<String> = candidates
        .iter()
        .filter(|n| patterns.iter().any(|p| suffix_match(p, n)))
        .cloned()
        .collect();
    let every_pattern_used = patterns
        .iter()
        .all(|p| adapted.iter().any(|n| suffix_match(p, n)));
    if &picked == adapted && every_pattern_used {
        json!(patterns)
    } else {
        json!(exact_regex(adapted, projections))
    }
}

/// A regex whose full matches are exactly `names`: one alternative per
/// name with its layer (block) index generalised — `\d+` when every layer
/// of the model has that projection adapted, else the list of indices.
pub fn exact_regex(names: &BTreeSet<String>, projections: &[String]) -> String {
    // template ("model.language_model.layers.{}.self_attn.q_proj") -> indices
    fn split(name: &str) -> (String, Option<String>) {
        for marker in [".layers.", ".blocks."] {
            if let Some(at) = name.find(marker) {
                let start = at + marker.len();
                let rest = &name[start..];
                let end = rest.find('.').unwrap_or(rest.len());
                let index = &rest[..end];
                if !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()) {
                    let template = format!("{}{{}}{}", &name[..start], &rest[end..]);
                    return (template, Some(index.to_string()));
                }
            }
        }
        (name.to_string(), None)
    }
    let mut groups: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for name in names {
        let (template, index) = split(name);
        groups.entry(template).or_default().extend(index);
    }
    let mut all: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for name in projections {
        let (template, index) = split(name);
        all.entry(template).or_default().extend(index);
    }
    let alternatives: Vec<String> = groups
        .iter()
        .map(|(template, indices)| {
            let Some((head, tail)) = template.split_once("{}") else {
                return regex::escape(template);
            };
            let index = if all.get(template) == Some(indices) {
                r"\d+".to_string()
            } else {
                let mut sorted: Vec<&String> = indices.iter().collect();
                sorted.sort_by_key(|i| i.parse::<u64>().unwrap_or(u64::MAX));
                let list: Vec<&str> = sorted.iter().map(|s| s.as_str()).collect();
                format!("(?:{})", list.join("|"))
            };
            format!("{}{index}{}", regex::escape(head), regex::escape(tail))
        })
        .collect();
    format!("(?:{})", alternatives.join("|"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_canonical_modules_and_back() {
        let canonical = "model.language_model.layers.0.self_attn.q_proj";
        for key in [
            "base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_A.weight",
            "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
            "base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_A.default.weight",
        ] {
            assert_eq!(
                parse_key(key),
                Ok((canonical.to_string(), Factor::A)),
                "{key}"
            );
        }
        assert_eq!(
            parse_key("base_model.model.visual.blocks.1.attn.qkv.lora_B.weight"),
            Ok(("model.visual.blocks.1.attn.qkv".to_string(), Factor::B))
        );
        assert_eq!(
            peft_key(canonical, Factor::B),
            "base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_B.weight"
        );
        let (module, factor) = parse_key(&peft_key(canonical, Factor::A)).unwrap();
        assert_eq!((module.as_str(), factor), (canonical, Factor::A));
    }

    #[test]
    fn keys_that_are_not_factors_say_why() {
        let why = |k| parse_key(k).unwrap_err();
        assert!(why("model.layers.0.self_attn.q_proj.lora_A.weight").contains("not a PEFT key"));
        assert!(
            why("base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector")
                .contains("DoRA")
        );
        assert!(why("base_model.model.model.embed_tokens.lora_embedding_A").contains("embedding"));
        assert!(why("base_model.model.model.embed_tokens.weight").contains("full weight"));
    }

    #[test]
    fn patterns_follow_peft() {
        let config = PeftLoraConfig {
            r: 4,
            lora_alpha: 8.0,
            use_rslora: false,
            rank_pattern: vec![("q_proj".into(), 2), (r"layers\.1\..*".into(), 8)],
            alpha_pattern: vec![("down_proj".into(), 16.0)],
            target_modules: None,
        };
        let q0 = "model.language_model.layers.0.self_attn.q_proj";
        assert_eq!(config.rank_and_scale(q0), (2, 4.0));
        // The first matching key wins.
        let q1 = "model.language_model.layers.1.self_attn.q_proj";
        assert_eq!(config.rank_and_scale(q1), (2, 4.0));
        let k1 = "model.language_model.layers.1.self_attn.k_proj";
        assert_eq!(config.rank_and_scale(k1), (8, 1.0));
        let down = "model.language_model.layers.0.mlp.down_proj";
        assert_eq!(config.rank_and_scale(down), (4, 4.0));
        // A pattern matches whole name components only.
        let xq = "model.language_model.layers.0.self_attn.xq_proj";
        assert_eq!(config.rank_and_scale(xq), (4, 2.0));
        let rs = PeftLoraConfig {
            use_rslora: true,
            rank_pattern: Vec::new(),
            alpha_pattern: Vec::new(),
            ..config
        };
        assert_eq!(rs.rank_and_scale(q0), (4, 4.0)); // 8 / √4
    }

    #[test]
    fn target_lists_and_regexes_select_as_peft_does() {
        let list = Targets::List(vec!["q_proj".into()]);
        assert_eq!(
            list.selects("model.language_model.layers.0.self_attn.q_proj"),
            Some(true)
        );
        assert_eq!(
            list.selects("model.language_model.layers.0.self_attn.xq_proj"),
            Some(false)
        );
        let re = Targets::Regex(r"model\.language_model\.layers\.\d+\.self_attn\.[qk]_proj".into());
        assert_eq!(
            re.selects("model.language_model.layers.10.self_attn.k_proj"),
            Some(true)
        );
        assert_eq!(
            re.selects("x.model.language_model.layers.1.self_attn.k_proj"),
            Some(false)
        );
        assert_eq!(Targets::Regex("(?<=a)b".into()).selects("ab"), None);
    }

    #[test]
    fn the_exact_regex_matches_only_the_adapted_names() {
        let projections: Vec<String> = (0..3)
            .flat_map(|i| {
                [
                    format!("model.language_model.layers.{i}.self_attn.q_proj"),
                    format!("model.language_model.layers.{i}.mlp.gate_proj"),
                    format!("model.visual.blocks.{i}.mlp.gate_proj"),
                ]
            })
            .chain(["model.visual.merger.mlp.0".to_string()])
            .collect();
        let adapted: BTreeSet<String> = projections
            .iter()
            .filter(|n| n.contains("language_model") || n.contains("blocks.1."))
            .cloned()
            .collect();
        let re = exact_regex(&adapted, &projections);
        assert_eq!(
            re,
            r"(?:model\.language_model\.layers\.\d+\.mlp\.gate_proj|model\.language_model\.layers\.\d+\.self_attn\.q_proj|model\.visual\.blocks\.(?:1)\.mlp\.gate_proj)"
        );
        let targets = Targets::Regex(re);
        for name in &projections {
            assert_eq!(
                targets.selects(name),
                Some(adapted.contains(name)),
                "{name}"
            );
        }
    }

    #[test]
    fn target_modules_keeps_the_patterns_when_peft_would_pick_the_same() {
        let lm = |i: usize, p: &str| format!("model.language_model.layers.{i}.mlp.{p}");
        let vision = |i: usize, p: &str| format!("model.visual.blocks.{i}.mlp.{p}");
        let projections = vec![lm(0, "gate_proj"), lm(0, "up_proj"), vision(0, "gate_proj")];
        let adapted: BTreeSet<String> = [lm(0, "gate_proj"), lm(0, "up_proj")].into();
        // `up_proj` names language modules only: the list stands.
        let only_up = BTreeSet::from([lm(0, "up_proj")]);
        assert_eq!(
            target_modules(&["up_proj".into()], &only_up, &projections, &projections),
            json!(["up_proj"])
        );
        // `gate_proj` also names the tower's: PEFT would adapt it, so a regex.
        let patterns = vec!["gate_proj".to_string(), "up_proj".to_string()];
        let written = target_modules(&patterns, &adapted, &projections, &projections);
        let Value::String(re) = written else {
            panic!("expected a regex, got {written}")
        };
        let targets = Targets::Regex(re);
        assert_eq!(targets.selects(&vision(0, "gate_proj")), Some(false));
        assert_eq!(targets.selects(&lm(0, "gate_proj")), Some(true));
    }
}
