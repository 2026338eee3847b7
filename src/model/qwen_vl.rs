//! The whole model (`Qwen2_5_VLForConditionalGeneration` /
//! `Qwen3VLForConditionalGeneration`): vision tower + decoder + LM head, and
//! the inputs it takes.

use std::path::Path;

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{DType, Device, FloatDType, Int, Tensor, TensorData};

use super::cache::{KvCache, causal_mask};
use super::config::QwenVlConfig;
use super::error::{ModelError, Result};
use super::lora::LoraLinear;
use super::position::{Grid, RopeLayout, TOKEN_TEXT, TOKEN_VIDEO, rope_index};
use super::rope::text_rotary;
use super::text::{DeepStack, TextModel};
use super::vision::{VisionModel, int_tensor};
use super::weights::{export_hf, load_hf_weights};

/// Pixel patches of the videos in a batch, in prompt order.
#[derive(Debug, Clone)]
pub struct VideoInput {
    /// `[patches, C*T*P*P]` as the HF video processor lays them out.
    pub pixel_values: Tensor<2>,
    /// One grid per video.
    pub grids: Vec<Grid>,
    /// Qwen2.5-VL: seconds covered by one temporal patch, per video
    /// (`temporal_patch_size / fps`); ignored by Qwen3-VL.
    pub second_per_grid_ts: Vec<f32>,
    /// Every row of the batch shows these same videos (the prompts of a
    /// GRPO group): the vision tower runs once and all rows share its
    /// features. Otherwise the videos are consumed row after row.
    pub shared_across_rows: bool,
}

impl VideoInput {
    /// The videos of several prompts, in order, as one input (each row of
    /// the batch consumes its own videos).
    pub fn concat<'a>(videos: impl IntoIterator<Item = &'a VideoInput>) -> Option<VideoInput> {
        let videos: Vec<&VideoInput> = videos.into_iter().collect();
        if videos.is_empty() {
            return None;
        }
        Some(VideoInput {
            pixel_values: Tensor::cat(videos.iter().map(|v| v.pixel_values.clone()).collect(), 0),
            grids: videos
                .iter()
                .flat_map(|v| v.grids.iter().copied())
                .collect(),
            second_per_grid_ts: videos
                .iter()
                .flat_map(|v| v.second_per_grid_ts.iter().copied())
                .collect(),
            shared_across_rows: false,
        })
    }
}

/// A (possibly padded) batch of prompts.
#[derive(Debug, Clone)]
pub struct Batch {
    /// `[B][L]`
    pub input_ids: Vec<Vec<i64>>,
    /// `[B][L]`, false at padding.
    pub attention_mask: Vec<Vec<bool>>,
    /// `[B][L]`, HF `mm_token_type_ids`: 0 text, 2 video.
    pub token_types: Vec<Vec<i64>>,
    pub video: Option<VideoInput>,
}

impl Batch {
    /// A text-only batch without padding.
    pub fn text(input_ids: Vec<Vec<i64>>) -> Self {
        let attention_mask = input_ids.iter().map(|r| vec![true; r.len()]).collect();
        let token_types = input_ids
            .iter()
            .map(|r| vec![TOKEN_TEXT; r.len()])
            .collect();
        Batch {
            input_ids,
            attention_mask,
            token_types,
            video: None,
        }
    }

    /// Left-pads tokenized prompts to one length (as generation wants:
    /// every row ends at the last column). Token types come from the ids:
    /// `video_token_id` is a video token, everything else text.
    pub fn left_padded(
        rows: &[Vec<i64>],
        pad_id: i64,
        video_token_id: u32,
        video: Option<VideoInput>,
    ) -> Self {
        let width = rows.iter().map(Vec::len).max().unwrap_or(0);
        let video_token = i64::from(video_token_id);
        let mut batch = Batch {
            input_ids: Vec::with_capacity(rows.len()),
            attention_mask: Vec::with_capacity(rows.len()),
            token_types: Vec::with_capacity(rows.len()),
            video,
        };
        for row in rows {
            let pad = width - row.len();
            batch.input_ids.push(
                std::iter::repeat_n(pad_id, pad)
                    .chain(row.iter().copied())
                    .collect(),
            );
            batch
                .attention_mask
                .push((0..width).map(|i| i >= pad).collect());
            batch.token_types.push(
                std::iter::repeat_n(TOKEN_TEXT, pad)
                    .chain(row.iter().map(|&id| {
                        if id == video_token {
                            TOKEN_VIDEO
                        } else {
                            TOKEN_TEXT
                        }
                    }))
                    .collect(),
            );
        }
        batch
    }

    pub fn rows(&self) -> usize {
        self.input_ids.len()
    }

    pub fn len(&self) -> usize {
        self.input_ids.first().map_or(0, Vec::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Shapes and ranges the model would otherwise panic on.
    fn check(&self, config: &QwenVlConfig) -> Result<()> {
        let len = self.len();
        let vocab = config.text.vocab_size as i64;
        if let Some(bad) = self
            .input_ids
            .iter()
            .flatten()
            .find(|&&id| id < 0 || id >= vocab)
        {
            return Err(ModelError::Input(format!(
                "token id {bad} outside the vocabulary of {vocab}"
            )));
        }
        if let Some(video) = &self.video {
            let v = &config.vision;
            let [patches, dim] = video.pixel_values.dims();
            if dim != v.patch_dim() {
                return Err(ModelError::Input(format!(
                    "pixel patches have {dim} values, the vision tower takes {} (C*T*P*P)",
                    v.patch_dim()
                )));
            }
            let merge = v.spatial_merge_size;
            if let Some(g) = video
                .grids
                .iter()
                .find(|g| g.t == 0 || g.h % merge != 0 || g.w % merge != 0)
            {
                return Err(ModelError::Input(format!(
                    "grid {g:?} is empty or not divisible by the merge size {merge}"
                )));
            }
            let expected: usize = video.grids.iter().map(Grid::patches).sum();
            if patches != expected {
                return Err(ModelError::Input(format!(
                    "{patches} pixel patches but the grids give {expected}"
                )));
            }
        }
        for (b, ((ids, mask), types)) in self
            .input_ids
            .iter()
            .zip(&self.attention_mask)
            .zip(&self.token_types)
            .enumerate()
        {
            if ids.len() != len || mask.len() != len || types.len() != len {
                return Err(ModelError::Input(format!(
                    "row {b}: ids/mask/types lengths {}/{}/{} differ from {len}",
                    ids.len(),
                    mask.len(),
                    types.len()
                )));
            }
        }
        if self.attention_mask.len() != self.rows() || self.token_types.len() != self.rows() {
            return Err(ModelError::Input(
                "ids, mask and types have different row counts".into(),
            ));
        }
        Ok(())
    }
}

/// `model`: the vision tower and the language model.
#[derive(Module, Debug)]
pub struct QwenVlModel {
    pub visual: VisionModel,
    pub language_model: TextModel,
}

/// The full model. `lm_head` is absent when the embeddings are tied.
#[derive(Module, Debug)]
pub struct QwenVl {
    pub model: QwenVlModel,
    pub lm_head: Option<LoraLinear>,
    #[module(skip)]
    pub config: QwenVlConfig,
}

impl QwenVl {
    /// A randomly initialised model (tests, demos, the tiny CPU config).
    pub fn new(config: &QwenVlConfig, device: &Device) -> Self {
        let t = &config.text;
        QwenVl {
            model: QwenVlModel {
                visual: VisionModel::new(config.arch, &config.vision, device),
                language_model: TextModel::new(t, device),
            },
            lm_head: (!config.tie_word_embeddings)
                .then(|| LoraLinear::new(t.hidden_size, t.vocab_size, false, device)),
            config: config.clone(),
        }
    }

    /// Loads `config.json` and `*.safetensors` from a HF model directory,
    /// every weight converted to f32.
    pub fn from_hf_dir(dir: &Path, device: &Device) -> Result<Self> {
        Self::from_hf_dir_in(dir, device, Some(DType::F32))
    }

    /// [`from_hf_dir`](Self::from_hf_dir) with the weights in `dtype`, or
    /// (`None`) in the dtype `config.json` declares (f32 if none): a bf16
    /// checkpoint stays bf16 from file to device. The parameters of the
    /// freshly built model are lazy, so no f32 copy of them is ever
    /// allocated.
    pub fn from_hf_dir_in(dir: &Path, device: &Device, dtype: Option<DType>) -> Result<Self> {
        let config = QwenVlConfig::from_file(dir)?;
        let dtype = match dtype {
            Some(dtype) => dtype,
            None => std::fs::read_to_string(dir.join("config.json"))
                .ok()
                .and_then(|text| QwenVlConfig::declared_dtype(&text))
                .unwrap_or(DType::F32),
        };
        let model = QwenVl::new(&config, device);
        let ignored: &[&str] = if config.tie_word_embeddings {
            &["lm_head.weight"]
        } else {
            &[]
        };
        load_hf_weights(dir, model, ignored, dtype)
    }

    /// Writes the model as a HF directory: `model.safetensors` (each tensor
    /// in its parameter's dtype: f32, or bf16 / f16 for a cast model) and a
    /// `config.json` (written from the config; pass the text the model was
    /// loaded with as `source_config` to keep fields vgrpo does not model,
    /// such as token ids of the generation config). Adapters are merged
    /// into their weights first ([`QwenVl::merged`]): transformers has no
    /// place for them in a model file.
    pub fn export_hf(&self, source_config: Option<&str>, dir: &Path) -> Result<()> {
        if self.has_adapters() {
            return self.clone().merged().export_hf(source_config, dir);
        }
        let generated;
        let config_json = match source_config {
            Some(text) => text,
            None => {
                generated = self.config.to_hf_json().to_string();
                &generated
            }
        };
        export_hf(self, &self.config, config_json, dir)
    }

    fn rope_layout(&self) -> RopeLayout {
        RopeLayout {
            arch: self.config.arch,
            spatial_merge_size: self.config.vision.spatial_merge_size,
            tokens_per_second: self.config.vision.tokens_per_second,
        }
    }

    /// Final hidden states `[B, L, H]` of a prompt batch. With `cache`, the
    /// keys/values are kept for decoding (the cache must be empty).
    pub fn forward_hidden(
        &self,
        batch: &Batch,
        cache: Option<&mut KvCache>,
        device: &Device,
    ) -> Result<Tensor<3>> {
        batch.check(&self.config)?;
        let (b, l) = (batch.rows(), batch.len());
        let h = self.config.text.hidden_size;
        let ids: Vec<i64> = batch.input_ids.iter().flatten().copied().collect();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [b, l]), device);
        let mut embeds = self.model.language_model.embed(ids);

        let grids: &[Grid] = batch.video.as_ref().map_or(&[], |v| &v.grids);
        let seconds: &[f32] = batch.video.as_ref().map_or(&[], |v| &v.second_per_grid_ts);
        let shared = batch.video.as_ref().is_some_and(|v| v.shared_across_rows);
        let mut deepstack = None;
        if let Some(video) = &batch.video {
            let out = self
                .model
                .visual
                .forward(video.pixel_values.clone(), &video.grids);
            // Row r of the flattened embeddings takes visual token k at the
            // k-th video-token position: gather from [text rows; visual rows].
            // Visual features go where the token *type* says video (HF's
            // `mm_token_type_ids`), not wherever the id is `<|video_pad|>`:
            // a sampled completion may contain that id as plain text.
            let mut gather = Vec::with_capacity(b * l);
            let mut visual_gather = Vec::with_capacity(b * l);
            let [visual_tokens, _] = out.embeds.dims();
            let mut k = 0usize;
            for (row, (types, mask)) in batch
                .token_types
                .iter()
                .zip(&batch.attention_mask)
                .enumerate()
            {
                for (i, (&kind, &real)) in types.iter().zip(mask).enumerate() {
                    if real && kind == TOKEN_VIDEO {
                        gather.push(b * l + k);
                        k += 1;
                        visual_gather.push(k);
                    } else {
                        gather.push(row * l + i);
                        visual_gather.push(0);
                    }
                }
                if video.shared_across_rows {
                    if k != visual_tokens {
                        return Err(ModelError::Input(format!(
                            "row {row}: {k} video tokens but the shared videos give {visual_tokens} features"
                        )));
                    }
                    k = 0;
                }
            }
            if !video.shared_across_rows && k != visual_tokens {
                return Err(ModelError::Input(format!(
                    "{k} video tokens in the prompt but the videos give {visual_tokens} features"
                )));
            }
            let table = Tensor::cat(vec![embeds.reshape([b * l, h]), out.embeds], 0);
            embeds = table
                .select(0, int_tensor(&gather, device))
                .reshape([b, l, h]);
            if !out.deepstack.is_empty() {
                deepstack = Some(DeepStack {
                    gather: int_tensor(&visual_gather, device),
                    features: out.deepstack,
                });
            }
        } else if batch
            .token_types
            .iter()
            .flatten()
            .any(|&t| t == TOKEN_VIDEO)
        {
            return Err(ModelError::Input(
                "video token types but no video input".into(),
            ));
        }

        let positions = rope_index(
            self.rope_layout(),
            &batch.token_types,
            &batch.attention_mask,
            grids,
            seconds,
            shared,
        )?;
        let t = &self.config.text;
        let rotary = text_rotary(
            self.config.arch,
            t.mrope_section,
            t.head_dim,
            t.rope_theta,
            &positions.ids,
            device,
        );
        let hidden = match cache {
            Some(cache) => {
                if !cache.is_empty() {
                    return Err(ModelError::Input("prefill needs an empty KV cache".into()));
                }
                cache.begin_step(&batch.attention_mask)?;
                cache.next_position = batch
                    .attention_mask
                    .iter()
                    .zip(&positions.next_position)
                    .map(|(mask, delta)| delta + mask.iter().filter(|&&m| m).count() as i64)
                    .collect();
                let mask = causal_mask(cache.key_valid(), l, device);
                self.model.language_model.forward(
                    embeds,
                    &rotary,
                    mask,
                    Some(cache),
                    deepstack.as_ref(),
                )
            }
            None => {
                let mask = causal_mask(&batch.attention_mask, l, device);
                self.model
                    .language_model
                    .forward(embeds, &rotary, mask, None, deepstack.as_ref())
            }
        };
        Ok(hidden)
    }

    /// One decoding step: `tokens[b]` is appended to row `b` of `cache`
    /// (`valid[b] = false` marks a row that has finished and only pads).
    /// Returns the hidden states `[B, 1, H]`.
    pub fn decode_hidden(
        &self,
        tokens: &[i64],
        valid: &[bool],
        cache: &mut KvCache,
        device: &Device,
    ) -> Result<Tensor<3>> {
        if valid.len() != tokens.len() {
            return Err(ModelError::Input(format!(
                "decode step with {} tokens, {} flags",
                tokens.len(),
                valid.len()
            )));
        }
        let tokens: Vec<Vec<i64>> = tokens.iter().map(|&t| vec![t]).collect();
        let valid: Vec<Vec<bool>> = valid.iter().map(|&v| vec![v]).collect();
        self.extend_hidden(&tokens, &valid, cache, device)
    }

    /// Appends `tokens [B][T]` (text) to the rows of `cache` and returns
    /// their hidden states `[B, T, H]`. `valid[b][i] = false` marks padding:
    /// it is never attended to and does not advance the row's position, so
    /// right-padded rows of different lengths share one step. Each token
    /// attends to everything cached before it and to the step's earlier
    /// tokens of its row (causal within the step).
    pub fn extend_hidden(
        &self,
        tokens: &[Vec<i64>],
        valid: &[Vec<bool>],
        cache: &mut KvCache,
        device: &Device,
    ) -> Result<Tensor<3>> {
        let b = tokens.len();
        let t = tokens.first().map_or(0, Vec::len);
        let ragged = tokens.iter().any(|r| r.len() != t) || valid.iter().any(|r| r.len() != t);
        if t == 0 || ragged || valid.len() != b || cache.batch() != b {
            return Err(ModelError::Input(format!(
                "step of {b} rows × {t} tokens ({} flag rows, ragged: {ragged}) on {} cached rows",
                valid.len(),
                cache.batch()
            )));
        }
        cache.begin_step(valid)?;
        // A row's real tokens take consecutive positions from its next one.
        let pos: Vec<Vec<i64>> = cache
            .next_position
            .iter_mut()
            .zip(valid)
            .map(|(next, row)| {
                row.iter()
                    .map(|&real| {
                        let here = *next;
                        *next += i64::from(real);
                        here
                    })
                    .collect()
            })
            .collect();
        let c = &self.config.text;
        let rotary = text_rotary(
            self.config.arch,
            c.mrope_section,
            c.head_dim,
            c.rope_theta,
            &[pos.clone(), pos.clone(), pos],
            device,
        );
        let ids: Vec<i64> = tokens.iter().flatten().copied().collect();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [b, t]), device);
        let embeds = self.model.language_model.embed(ids);
        let mask = causal_mask(cache.key_valid(), t, device);
        Ok(self
            .model
            .language_model
            .forward(embeds, &rotary, mask, Some(cache), None))
    }

    /// `hidden [..., H] -> logits [..., V]` (tied head: the embedding matrix).
    pub fn logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        match &self.lm_head {
            Some(head) => head.forward(hidden),
            None => {
                let table = self.model.language_model.embed_tokens.weight.val(); // [V, H]
                let [b, t, h] = hidden.dims();
                if t == 1 {
                    // One position per row (decoding): a single [B, H] × [H, V]
                    // matmul. The broadcast form below would run B matmuls that
                    // each repack the whole table. Same values, bit for bit.
                    let v = table.dims()[0];
                    hidden
                        .reshape([b, h])
                        .matmul(table.transpose())
                        .reshape([b, 1, v])
                } else {
                    hidden.matmul(table.transpose().unsqueeze())
                }
            }
        }
    }

    /// Logits `[B, L, V]` of a prompt batch (no cache).
    pub fn forward(&self, batch: &Batch, device: &Device) -> Result<Tensor<3>> {
        Ok(self.logits(self.forward_hidden(batch, None, device)?))
    }

    /// The model with every float parameter cast to `dtype` (e.g. bf16 for
    /// rollouts and the frozen reference). Norm statistics, attention
    /// softmax and log-softmax stay in f32; parameter ids are kept.
    pub fn with_float_dtype(self, dtype: FloatDType) -> Self {
        struct Cast(FloatDType);
        impl ModuleMapper for Cast {
            fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
                let dtype = self.0;
                param.map(|t| t.cast(dtype))
            }
        }
        self.map(&mut Cast(dtype))
    }

    /// A fresh cache sized for this model.
    pub fn new_cache(&self, capacity: usize) -> KvCache {
        KvCache::new(self.config.text.num_hidden_layers, capacity)
    }
}
