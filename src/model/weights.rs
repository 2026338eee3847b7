//! HuggingFace safetensors import and export.
//!
//! Weight names come from the module tree: a parameter's name is the path of
//! field names down to it (`model.language_model.layers.3.mlp.up_proj.weight`),
//! enum variants left out, and `mlp_0` / `mlp_2` spelled `mlp.0` / `mlp.2`
//! as HF's `Sequential` does. On disk two layouts exist:
//!
//! * canonical (Qwen3-VL, transformers 5 in memory): `model.language_model.*`,
//!   `model.visual.*`, `lm_head.*`;
//! * legacy (the released Qwen2/2.5-VL files, and what transformers 5.23
//!   still writes for Qwen2.5-VL): `model.layers.*`, `model.embed_tokens.*`,
//!   `model.norm.*`, `visual.*`.
//!
//! Import accepts both (single file or shards listed in
//! `model.safetensors.index.json`; f32, f16 and bf16), converting every
//! tensor to one dtype — 16-bit tensors stored in that dtype are kept as
//! they are, so a bf16 checkpoint goes from file to device as bf16 bits,
//! with no f32 copy on the way. Export writes the layout transformers
//! itself writes for the architecture, each tensor in its parameter's dtype
//! (bf16 / f16 kept, else f32).
//! Torch `Linear` weights are `[out, in]` and Burn's are `[in, out]`; the
//! patch embedding's 5-D `Conv3d` kernel is flattened to `[out, C*T*P*P]`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{DType, Device, Tensor, TensorData};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use super::config::{Arch, QwenVlConfig};
use super::error::{ModelError, Result};

/// Which on-disk naming a checkpoint uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Canonical,
    Legacy,
}

impl Layout {
    /// The layout transformers writes for this architecture.
    pub fn for_arch(arch: Arch) -> Self {
        match arch {
            Arch::Qwen25Vl => Layout::Legacy,
            Arch::Qwen3Vl => Layout::Canonical,
        }
    }
}

/// On-disk name -> canonical name.
pub fn canonical_name(name: &str) -> String {
    if let Some(rest) = name.strip_prefix("visual.") {
        format!("model.visual.{rest}")
    } else if let Some(rest) = name.strip_prefix("model.")
        && !rest.starts_with("language_model.")
        && !rest.starts_with("visual.")
    {
        format!("model.language_model.{rest}")
    } else {
        name.to_string()
    }
}

/// Canonical name -> on-disk name in `layout`.
pub fn layout_name(canonical: &str, layout: Layout) -> String {
    match layout {
        Layout::Canonical => canonical.to_string(),
        Layout::Legacy => {
            if let Some(rest) = canonical.strip_prefix("model.visual.") {
                format!("visual.{rest}")
            } else if let Some(rest) = canonical.strip_prefix("model.language_model.") {
                format!("model.{rest}")
            } else {
                canonical.to_string()
            }
        }
    }
}

/// Module path -> canonical HF name (`mlp_0` -> `mlp.0`).
fn hf_name(path: &str) -> String {
    path.replace(".mlp_0.", ".mlp.0.")
        .replace(".mlp_2.", ".mlp.2.")
}

/// The safetensors files of a model directory: `model.safetensors`, or the
/// shards named in `model.safetensors.index.json`.
pub fn checkpoint_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    let text = std::fs::read_to_string(&index).map_err(|source| ModelError::Io {
        path: index.clone(),
        source,
    })?;
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: BTreeMap<String, String>,
    }
    let parsed: Index = serde_json::from_str(&text).map_err(|source| ModelError::ConfigJson {
        path: index.clone(),
        source,
    })?;
    let mut files: Vec<PathBuf> = parsed.weight_map.values().map(|f| dir.join(f)).collect();
    files.sort();
    files.dedup();
    Ok(files)
}

/// Replaces every parameter of `module` by the checkpoint tensor of the same
/// name, reading one safetensors file at a time (peak memory: the model plus
/// one shard), every tensor converted to `dtype` (16-bit tensors stored in
/// `dtype` are kept as they are, never widened).
/// Fails listing all missing and unexpected names; names in `ignored` may
/// be present without a parameter (a tied `lm_head.weight`).
pub fn load_hf_weights<M: Module>(
    dir: &Path,
    module: M,
    ignored: &[&str],
    dtype: DType,
) -> Result<M> {
    let mut module = module;
    let mut used = HashSet::new();
    let mut stored = HashSet::new();
    let mut errors = Vec::new();
    for path in checkpoint_files(dir)? {
        let bytes = read_file(&path)?;
        let file = parse_file(&path, &bytes)?;
        let index: HashMap<String, String> = file
            .names()
            .into_iter()
            .map(|name| (canonical_name(name), name.to_string()))
            .collect();
        stored.extend(index.keys().cloned());
        let mut loader = Loader {
            file: &file,
            source: &path,
            index,
            used: &mut used,
            path: Vec::new(),
            errors: &mut errors,
            dtype,
        };
        module = module.map(&mut loader);
    }
    let mut names = ParamNames::default();
    module.visit(&mut names);
    let missing: Vec<String> = names
        .names
        .into_iter()
        .filter(|n| !used.contains(n))
        .collect();
    let mut unexpected: Vec<String> = stored
        .into_iter()
        .filter(|k| !used.contains(k) && !ignored.contains(&k.as_str()))
        .collect();
    unexpected.sort();
    if !missing.is_empty() || !unexpected.is_empty() {
        return Err(ModelError::WeightNames {
            missing,
            unexpected,
        });
    }
    // Names first (the more telling mismatch), then shapes and dtypes.
    if let Some(err) = errors.into_iter().next() {
        return Err(err);
    }
    Ok(module)
}

/// The bytes of the safetensors file `path`.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// `bytes` (read from `path`) as a safetensors file.
pub(crate) fn parse_file<'a>(path: &Path, bytes: &'a [u8]) -> Result<SafeTensors<'a>> {
    SafeTensors::deserialize(bytes).map_err(|e| ModelError::Safetensors {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// The HF names of all float parameters of a module, in module order.
#[derive(Default)]
struct ParamNames {
    path: Vec<Step>,
    names: Vec<String>,
}

impl ModuleVisitor for ParamNames {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.push(Step {
            name: name.to_string(),
            container: container_type.to_string(),
        });
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, _param: &Param<Tensor<D>>) {
        self.names.push(hf_name(&joined(&self.path)));
    }
}

/// One step of a module path: the field name and the type holding it.
struct Step {
    name: String,
    container: String,
}

fn joined(path: &[Step]) -> String {
    path.iter()
        .filter(|s| !s.container.starts_with("Enum:"))
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(".")
}

fn is_linear_weight(path: &[Step]) -> bool {
    path.last()
        .is_some_and(|s| s.name == "weight" && s.container == "Struct:LoraLinear")
}

struct Loader<'a> {
    file: &'a SafeTensors<'a>,
    source: &'a Path,
    /// canonical name -> name in this file
    index: HashMap<String, String>,
    used: &'a mut HashSet<String>,
    path: Vec<Step>,
    errors: &'a mut Vec<ModelError>,
    /// The dtype every tensor is loaded in.
    dtype: DType,
}

impl Loader<'_> {
    /// The values of `name` from this file, laid out for a module tensor of
    /// `shape`, in the loader's dtype; `None` if the file does not hold it
    /// (or on error, which is recorded).
    fn values(&mut self, name: &str, shape: &[usize], linear: bool) -> Option<TensorData> {
        let stored = self.index.get(name)?.clone();
        self.used.insert(name.to_string());
        let view = match self.file.tensor(&stored) {
            Ok(view) => view,
            Err(e) => {
                self.errors.push(ModelError::Safetensors {
                    path: self.source.to_path_buf(),
                    message: format!("{stored}: {e}"),
                });
                return None;
            }
        };
        let Some(stored_dtype) = float_dtype(view.dtype()) else {
            self.errors.push(ModelError::UnsupportedDtype {
                name: name.to_string(),
                dtype: format!("{:?}", view.dtype()),
            });
            return None;
        };
        let found = view.shape().to_vec();
        let fits = if linear {
            // torch [out, ...] (Conv3d kernels flatten) vs burn [in, out]
            shape.len() == 2
                && found.first() == Some(&shape[1])
                && found.iter().skip(1).product::<usize>() == shape[0]
        } else {
            found == shape
        };
        if !fits {
            self.errors.push(ModelError::ShapeMismatch {
                name: name.to_string(),
                expected: shape.to_vec(),
                found,
            });
            return None;
        }
        let target = self.dtype;
        let data = match (stored_dtype, target) {
            (DType::BF16, DType::BF16) => half_data::<half::bf16>(view.data(), linear, shape),
            (DType::F16, DType::F16) => half_data::<half::f16>(view.data(), linear, shape),
            _ => {
                let values = to_f32(view.dtype(), view.data())?;
                let values = if linear {
                    transpose(&values, shape[1], shape[0])
                } else {
                    values
                };
                let data = TensorData::new(values, shape.to_vec());
                match target {
                    DType::F32 => data,
                    other => data.convert_dtype(other),
                }
            }
        };
        Some(data)
    }
}

/// The float dtype a safetensors dtype holds, if it is one vgrpo loads.
fn float_dtype(dtype: Dtype) -> Option<DType> {
    match dtype {
        Dtype::F32 => Some(DType::F32),
        Dtype::BF16 => Some(DType::BF16),
        Dtype::F16 => Some(DType::F16),
        _ => None,
    }
}

/// 16-bit float values of a module tensor of `shape`, kept as they are
/// stored (transposed for a linear weight, `[out, in]` → `[in, out]`),
/// never widened.
fn half_data<T>(bytes: &[u8], linear: bool, shape: &[usize]) -> TensorData
where
    T: burn::tensor::Element + Copy + Default + HalfBits,
{
    let values: Vec<T> = bytes
        .chunks_exact(2)
        .map(|c| T::from_bits(u16::from_le_bytes([c[0], c[1]])))
        .collect();
    let values = if linear {
        transpose(&values, shape[1], shape[0])
    } else {
        values
    };
    TensorData::new(values, shape.to_vec())
}

/// A 16-bit float built from its bits.
trait HalfBits {
    fn from_bits(bits: u16) -> Self;
}

impl HalfBits for half::bf16 {
    fn from_bits(bits: u16) -> Self {
        half::bf16::from_bits(bits)
    }
}

impl HalfBits for half::f16 {
    fn from_bits(bits: u16) -> Self {
        half::f16::from_bits(bits)
    }
}

impl ModuleMapper for Loader<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.push(Step {
            name: name.to_string(),
            container: container_type.to_string(),
        });
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let name = hf_name(&joined(&self.path));
        let shape = param.lazy_shape().dims::<D>();
        let linear = is_linear_weight(&self.path);
        match self.values(&name, &shape, linear) {
            Some(data) => {
                let device: Device = param.lazy_device();
                let dtype = data.dtype();
                let tensor = Tensor::from_data(data, (&device, dtype));
                let id = param.id;
                param.transform_for_load(tensor, id)
            }
            None => param,
        }
    }
}

pub(crate) fn to_f32(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    let pairs = || {
        bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
    };
    match dtype {
        Dtype::F32 => Some(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        Dtype::BF16 => Some(pairs().map(|b| half::bf16::from_bits(b).to_f32()).collect()),
        Dtype::F16 => Some(pairs().map(|b| half::f16::from_bits(b).to_f32()).collect()),
        _ => None,
    }
}

/// `[rows, cols]` row-major -> `[cols, rows]` row-major.
pub(crate) fn transpose<T: Copy + Default>(values: &[T], rows: usize, cols: usize) -> Vec<T> {
    let mut out = vec![T::default(); values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    out
}

/// One exported tensor: HF name, HF shape, dtype and little-endian bytes.
struct Exported {
    name: String,
    shape: Vec<usize>,
    dtype: Dtype,
    bytes: Vec<u8>,
}

/// A parameter's values on the host in its stored precision: bf16 and f16
/// stay 16-bit, everything else becomes f32.
enum HostValues {
    F32(Vec<f32>),
    Bf16(Vec<half::bf16>),
    F16(Vec<half::f16>),
}

impl HostValues {
    fn read<const D: usize>(tensor: Tensor<D>) -> std::result::Result<Self, String> {
        let err = |e| format!("{e:?}");
        Ok(match tensor.dtype() {
            DType::BF16 => HostValues::Bf16(tensor.into_data().try_into_vec().map_err(err)?),
            DType::F16 => HostValues::F16(tensor.into_data().try_into_vec().map_err(err)?),
            _ => HostValues::F32(
                tensor
                    .try_into_vec_as::<f32>()
                    .map_err(|e| format!("{e:?}"))?,
            ),
        })
    }

    fn transposed(self, rows: usize, cols: usize) -> Self {
        match self {
            HostValues::F32(v) => HostValues::F32(transpose(&v, rows, cols)),
            HostValues::Bf16(v) => HostValues::Bf16(transpose(&v, rows, cols)),
            HostValues::F16(v) => HostValues::F16(transpose(&v, rows, cols)),
        }
    }

    fn into_bytes(self) -> (Dtype, Vec<u8>) {
        match self {
            HostValues::F32(v) => (Dtype::F32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            HostValues::Bf16(v) => (
                Dtype::BF16,
                v.iter().flat_map(|x| x.to_bits().to_le_bytes()).collect(),
            ),
            HostValues::F16(v) => (
                Dtype::F16,
                v.iter().flat_map(|x| x.to_bits().to_le_bytes()).collect(),
            ),
        }
    }
}

struct Exporter<'a> {
    path: Vec<Step>,
    layout: Layout,
    conv_kernel: &'a [usize],
    out: Vec<Exported>,
    errors: Vec<ModelError>,
}

impl ModuleVisitor for Exporter<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.push(Step {
            name: name.to_string(),
            container: container_type.to_string(),
        });
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let canonical = hf_name(&joined(&self.path));
        let tensor = param.val();
        let dims = tensor.dims().to_vec();
        let values = match HostValues::read(tensor) {
            Ok(v) => v,
            Err(e) => {
                self.errors
                    .push(ModelError::Readback(format!("{canonical}: {e}")));
                return;
            }
        };
        let (shape, values) = if is_linear_weight(&self.path) {
            let (d_in, d_out) = (dims[0], dims[1]);
            let shape = if canonical.ends_with("patch_embed.proj.weight") {
                [&[d_out][..], self.conv_kernel].concat()
            } else {
                vec![d_out, d_in]
            };
            (shape, values.transposed(d_in, d_out))
        } else {
            (dims, values)
        };
        let (dtype, bytes) = values.into_bytes();
        self.out.push(Exported {
            name: layout_name(&canonical, self.layout),
            shape,
            dtype,
            bytes,
        });
    }
}

/// Writes `module` as an HF-layout `model.safetensors` plus `config.json`
/// (copied verbatim from `config_json`) into `dir`. Each tensor keeps its
/// parameter's precision: bf16 and f16 parameters are written as BF16 and
/// F16, everything else as F32.
pub fn export_hf<M: Module>(
    module: &M,
    config: &QwenVlConfig,
    config_json: &str,
    dir: &Path,
) -> Result<()> {
    let io = |path: PathBuf| move |source| ModelError::Io { path, source };
    std::fs::create_dir_all(dir).map_err(io(dir.to_path_buf()))?;
    let v = &config.vision;
    let kernel = [
        v.in_channels,
        v.temporal_patch_size,
        v.patch_size,
        v.patch_size,
    ];
    let mut exporter = Exporter {
        path: Vec::new(),
        layout: Layout::for_arch(config.arch),
        conv_kernel: &kernel,
        out: Vec::new(),
        errors: Vec::new(),
    };
    module.visit(&mut exporter);
    if let Some(err) = exporter.errors.into_iter().next() {
        return Err(err);
    }
    let target = dir.join("model.safetensors");
    let views = exporter
        .out
        .iter()
        .map(|t| {
            TensorView::new(t.dtype, t.shape.clone(), &t.bytes)
                .map(|view| (t.name.clone(), view))
                .map_err(|e| ModelError::Safetensors {
                    path: target.clone(),
                    message: format!("{}: {e}", t.name),
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(views, Some(metadata), &target).map_err(|e| {
        ModelError::Safetensors {
            path: target.clone(),
            message: e.to_string(),
        }
    })?;
    let config_path = dir.join("config.json");
    let half = exporter
        .out
        .first()
        .map(|t| t.dtype)
        .filter(|&d| d != Dtype::F32 && exporter.out.iter().all(|t| t.dtype == d));
    let config_text = match half {
        Some(dtype) => with_config_dtype(config_json, dtype),
        None => config_json.to_string(),
    };
    std::fs::write(&config_path, config_text).map_err(io(config_path.clone()))
}

/// `config_json` with its `dtype` / `torch_dtype` fields (top level, and
/// in `text_config` / `vision_config`) naming `dtype`, so transformers'
/// `dtype="auto"` loads a 16-bit export in its own precision. Text that is
/// not a JSON object, or has no such field, is returned as it is.
fn with_config_dtype(config_json: &str, dtype: Dtype) -> String {
    let name = match dtype {
        Dtype::BF16 => "bfloat16",
        Dtype::F16 => "float16",
        _ => "float32",
    };
    let Ok(serde_json::Value::Object(mut root)) = serde_json::from_str(config_json) else {
        return config_json.to_string();
    };
    let mut changed = false;
    let mut set = |fields: &mut serde_json::Map<String, serde_json::Value>| {
        for key in ["dtype", "torch_dtype"] {
            if let Some(v) = fields.get_mut(key)
                && v.as_str() != Some(name)
            {
                *v = serde_json::Value::String(name.to_string());
                changed = true;
            }
        }
    };
    set(&mut root);
    for sub in ["text_config", "vision_config"] {
        if let Some(serde_json::Value::Object(fields)) = root.get_mut(sub) {
            set(fields);
        }
    }
    if !changed {
        return config_json.to_string();
    }
    let mut text = serde_json::to_string_pretty(&serde_json::Value::Object(root))
        .expect("a JSON value serialises");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_round_trip() {
        for (disk, canonical) in [
            (
                "model.layers.0.mlp.up_proj.weight",
                "model.language_model.layers.0.mlp.up_proj.weight",
            ),
            (
                "model.embed_tokens.weight",
                "model.language_model.embed_tokens.weight",
            ),
            ("visual.merger.mlp.0.bias", "model.visual.merger.mlp.0.bias"),
            ("lm_head.weight", "lm_head.weight"),
        ] {
            assert_eq!(canonical_name(disk), canonical);
            assert_eq!(layout_name(canonical, Layout::Legacy), disk);
            assert_eq!(canonical_name(canonical), canonical);
        }
    }

    #[test]
    fn half_precision_converts() {
        let one_bf16 = half::bf16::from_f32(1.5).to_bits().to_le_bytes();
        let one_f16 = half::f16::from_f32(-2.0).to_bits().to_le_bytes();
        assert_eq!(to_f32(Dtype::BF16, &one_bf16), Some(vec![1.5]));
        assert_eq!(to_f32(Dtype::F16, &one_f16), Some(vec![-2.0]));
        assert_eq!(to_f32(Dtype::I64, &[0; 8]), None);
    }

    #[test]
    fn half_exports_name_their_dtype_in_the_config() {
        let text = r#"{"dtype": "float32", "text_config": {"torch_dtype": "float32", "x": 1}}"#;
        let out: serde_json::Value =
            serde_json::from_str(&with_config_dtype(text, Dtype::BF16)).unwrap();
        assert_eq!(out["dtype"], "bfloat16");
        assert_eq!(out["text_config"]["torch_dtype"], "bfloat16");
        assert_eq!(out["text_config"]["x"], 1);
        // Nothing to change: the text stays as it was.
        let plain = "{\"a\":  1}";
        assert_eq!(with_config_dtype(plain, Dtype::F16), plain);
        assert_eq!(with_config_dtype("not json", Dtype::F16), "not json");
    }

    #[test]
    fn transpose_swaps_axes() {
        assert_eq!(
            transpose(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3),
            vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
        );
    }
}
