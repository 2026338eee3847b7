//! Every decision about one synthetic video — prompt, generator, split,
//! defects, scores, rationales — made up front as a pure function of the
//! config and seed ([`plan_set`]), and the frames that follow from a plan
//! ([`render_video`]). Nothing here touches the file system, so the whole
//! manifest of a set can be computed and tested without encoding a video.

use super::alignment::{Mismatch, ShownScene, sample_mismatches, shown_scene};
use super::config::{InvalidSynthConfig, SynthConfig};
use super::dynamic::{DynamicDefect, DynamicKind, Timeline, build_timeline};
use super::quality::{GENERATORS, Generator, clean_mos, level_severity, rated_mos};
use super::rationale;
use super::render::{Drawn, Placement, Rect, background, render_frame};
use super::scene::SceneSpec;
use super::visual::{self, VisualDefect, VisualKind};
use crate::data::{Dimension, ManifestRow, Split};
use crate::rng::Rng;
use crate::video::Frame;
use std::path::PathBuf;

/// The score of one dimension of one video.
#[derive(Debug, Clone, PartialEq)]
pub struct DimensionScore {
    pub dimension: Dimension,
    /// 0 = flawless … 1 = as bad as it gets.
    pub severity: f32,
    /// `5 − 4·severity`: what a noise-free rater would say.
    pub clean_mos: f32,
    /// The clean MOS plus rater noise, clamped to 1–5.
    pub mos: f32,
    pub rationale: String,
}

/// Everything decided about one video.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoPlan {
    pub index: usize,
    /// "v0007".
    pub id: String,
    pub generator: Generator,
    pub split: Split,
    /// What the prompt asks for.
    pub asked: SceneSpec,
    /// What the video shows (differs from `asked` when alignment is off).
    pub shown: ShownScene,
    pub mismatches: Vec<Mismatch>,
    pub placements: Vec<Placement>,
    pub visual: Vec<VisualDefect>,
    pub dynamic: Vec<DynamicDefect>,
    pub timeline: Timeline,
    /// Scores in `Dimension::ALL` order.
    pub scores: [DimensionScore; 3],
    /// Draws the visual noise of the frames.
    noise_rng: Rng,
}

/// Probability that a flawed video has a second, weaker defect of another
/// kind in the same dimension.
const SECOND_DEFECT: f64 = 0.35;

/// Picks the defect kinds of one dimension: a main kind at the dimension's
/// severity (the generator's habit twice as likely as any other kind) and
/// sometimes a second, weaker one. The score follows the worst defect, so
/// the second never changes the MOS, only the look.
fn pick_kinds<K: Copy + PartialEq>(
    allowed: &[K],
    habit: K,
    severity: f32,
    rng: &mut Rng,
) -> Vec<(K, f32)> {
    let weight = |k: &K| if *k == habit { 2 } else { 1 };
    let total: u64 = allowed.iter().map(weight).sum();
    let mut pick = rng.below(total);
    let mut main = allowed[0];
    for k in allowed {
        let w = weight(k);
        if pick < w {
            main = *k;
            break;
        }
        pick -= w;
    }
    let mut out = vec![(main, severity)];
    let others: Vec<K> = allowed.iter().copied().filter(|k| *k != main).collect();
    if !others.is_empty() && rng.bernoulli(SECOND_DEFECT) {
        let second = others[rng.index(others.len())];
        out.push((second, severity * rng.next_f32()));
    }
    out
}

/// Digits in video ids: at least 4, more for very large sets.
fn id_width(videos: usize) -> usize {
    videos.saturating_sub(1).to_string().len().max(4)
}

/// Plans video `index` of a set. `family` is the set's per-video stream;
/// each aspect draws from its own fork, so e.g. changing how scenes are
/// drawn does not change which defects a video gets.
fn plan_video(cfg: &SynthConfig, index: usize, split: Split, family: &Rng) -> VideoPlan {
    let rng = family.fork(index as u64);
    let [
        mut scene_rng,
        mut severity_rng,
        mut align_rng,
        mut dynamic_rng,
        mut visual_rng,
        mut rater_rng,
        noise_rng,
        mut layout_rng,
    ] = std::array::from_fn(|i| rng.fork(i as u64));
    let generator = GENERATORS[index % GENERATORS.len()];
    let asked = SceneSpec::sample(&mut scene_rng);

    let visual_severity = generator.severity(&mut severity_rng);
    let dynamic_severity = generator.severity(&mut severity_rng);
    let level = generator.bucket(&mut severity_rng);

    let mismatches = sample_mismatches(&asked, level, &mut align_rng);
    let shown = shown_scene(&asked, &mismatches);
    let placements: Vec<Placement> = (0..asked.objects.len())
        .map(|i| {
            Placement::sample(
                i,
                asked.objects.len(),
                cfg.width,
                cfg.height,
                &mut layout_rng,
            )
        })
        .collect();

    let visual: Vec<VisualDefect> = pick_kinds(
        &VisualKind::ALL,
        generator.visual_habit,
        visual_severity,
        &mut visual_rng,
    )
    .into_iter()
    .map(|(kind, severity)| VisualDefect { kind, severity })
    .collect();

    // Stutter and freezes are invisible when nothing moves.
    let allowed: Vec<DynamicKind> = DynamicKind::ALL
        .into_iter()
        .filter(|k| shown.has_motion() || k.shows_without_motion())
        .collect();
    let habit = if allowed.contains(&generator.dynamic_habit) {
        generator.dynamic_habit
    } else {
        allowed[0]
    };
    let dynamic: Vec<DynamicDefect> =
        pick_kinds(&allowed, habit, dynamic_severity, &mut dynamic_rng)
            .into_iter()
            .map(|(kind, severity)| DynamicDefect { kind, severity })
            .collect();
    let present: Vec<bool> = shown.objects.iter().map(Option::is_some).collect();
    let frame_rect = Rect {
        x0: 0.0,
        y0: 0.0,
        x1: cfg.width as f32,
        y1: cfg.height as f32,
    };
    let timeline = build_timeline(
        cfg.frames() as usize,
        cfg.fps,
        frame_rect,
        &dynamic,
        &placements,
        &present,
        &mut dynamic_rng,
    );

    let alignment_severity = level_severity(level);
    let rationales = [
        rationale::visual(&visual, &shown),
        rationale::dynamic(&timeline.events, &shown),
        rationale::alignment(&asked, &shown, &mismatches),
    ];
    let severities = [visual_severity, dynamic_severity, alignment_severity];
    let scores = std::array::from_fn(|d| {
        let clean = clean_mos(severities[d]);
        DimensionScore {
            dimension: Dimension::ALL[d],
            severity: severities[d],
            clean_mos: clean,
            mos: rated_mos(clean, cfg.rater_noise, &mut rater_rng),
            rationale: rationales[d].clone(),
        }
    });
    VideoPlan {
        index,
        id: format!("v{index:0width$}", width = id_width(cfg.videos)),
        generator,
        split,
        asked,
        shown,
        mismatches,
        placements,
        visual,
        dynamic,
        timeline,
        scores,
        noise_rng,
    }
}

/// The test split: `round(videos · test_fraction)` videos, spread over the
/// generators as evenly as possible (counts differ by at most one), chosen
/// by a seeded shuffle within each generator, so model-level metrics see
/// every generator in both splits whenever the set is large enough.
fn splits(cfg: &SynthConfig) -> Vec<Split> {
    let mut out = vec![Split::Train; cfg.videos];
    let mut rng = Rng::stream(cfg.seed, "synth/split");
    let mut members: Vec<Vec<usize>> = (0..GENERATORS.len())
        .map(|g| (g..cfg.videos).step_by(GENERATORS.len()).collect())
        .collect();
    for m in members.iter_mut() {
        rng.shuffle(m);
    }
    // Deal test slots round-robin over the generators, starting at a seeded
    // generator so small sets do not always draw from gen-a first.
    let mut order: Vec<usize> = (0..GENERATORS.len()).collect();
    rng.shuffle(&mut order);
    let test = (cfg.videos as f64 * f64::from(cfg.test_fraction)).round() as usize;
    let mut taken = 0;
    for round in 0.. {
        if taken == test {
            break;
        }
        for &g in &order {
            if taken < test && round < members[g].len() {
                out[members[g][round]] = Split::Test;
                taken += 1;
            }
        }
    }
    out
}

/// Plans the whole set (pure and cheap: no pixels are rendered).
pub fn plan_set(cfg: &SynthConfig) -> Result<Vec<VideoPlan>, InvalidSynthConfig> {
    cfg.validate()?;
    let family = Rng::stream(cfg.seed, "synth/videos");
    Ok(splits(cfg)
        .into_iter()
        .enumerate()
        .map(|(i, split)| plan_video(cfg, i, split, &family))
        .collect())
}

impl VideoPlan {
    /// The video's path relative to the data set directory.
    pub fn video_path(&self) -> PathBuf {
        PathBuf::from("videos").join(format!("{}.mp4", self.id))
    }

    pub fn prompt(&self) -> String {
        self.asked.prompt()
    }

    /// The three manifest rows of this video, ids like `v0007-visual`.
    pub fn rows(&self) -> [ManifestRow; 3] {
        let prompt = self.prompt();
        self.scores.clone().map(|s| ManifestRow {
            id: format!("{}-{}", self.id, s.dimension.id()),
            video: self.video_path(),
            prompt: prompt.clone(),
            dimension: s.dimension,
            mos: s.mos,
            generator: self.generator.name.to_string(),
            rationale: Some(s.rationale),
            split: Some(self.split),
            clean_mos: Some(s.clean_mos),
        })
    }
}

/// Renders the frames of a planned video: objects follow their (possibly
/// wrong) motions along the timeline, then the visual defects are applied.
/// A frame the timeline holds is an exact copy of the previous frame, grain
/// included, as a stuttering or frozen generator would output.
pub fn render_video(plan: &VideoPlan, cfg: &SynthConfig) -> Vec<Frame> {
    let (w, h) = (cfg.width, cfg.height);
    let t = &plan.timeline;
    let still_camera = t.camera.iter().all(|c| *c == [0.0, 0.0]);
    let fixed_backdrop = background(w, h, plan.shown.background, [0, 0]);
    let mut frames: Vec<Frame> = Vec::with_capacity(t.source.len());
    for i in 0..t.source.len() {
        let timestamp = i as f64 / f64::from(cfg.fps);
        if i > 0 && t.source[i] == t.source[i - 1] {
            let mut repeat = frames[i - 1].clone();
            repeat.timestamp = timestamp;
            frames.push(repeat);
            continue;
        }
        let moved;
        let backdrop = if still_camera {
            &fixed_backdrop
        } else {
            let [dx, dy] = t.camera[i];
            moved = background(
                w,
                h,
                plan.shown.background,
                [dx.round() as i32, dy.round() as i32],
            );
            &moved
        };
        let drawn: Vec<Drawn> = plan
            .shown
            .objects
            .iter()
            .enumerate()
            .filter_map(|(slot, o)| {
                let o = o.as_ref()?;
                let p = &plan.placements[slot];
                let [x, y] = p.position(o.motion, t.time(i));
                let [dx, dy] = t.offset[i][slot];
                Some(Drawn {
                    shape: o.shape,
                    colour: o.colour,
                    centre: p.clamp([x + dx, y + dy]),
                    radius: p.radius,
                })
            })
            .collect();
        let mut frame = render_frame(w, h, backdrop, &drawn, timestamp);
        visual::apply(&mut frame, &plan.visual, &mut plan.noise_rng.fork(i as u64));
        frames.push(frame);
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::super::quality::SCALE;
    use super::super::visual::{laplacian_energy, mean_abs_diff};
    use super::*;
    use crate::data::Rating;

    fn cfg(videos: usize, seed: u64) -> SynthConfig {
        SynthConfig {
            videos,
            seed,
            ..SynthConfig::default()
        }
    }

    #[test]
    fn same_seed_same_plan_and_pixels_other_seed_differs() {
        let a = plan_set(&cfg(12, 7)).unwrap();
        let b = plan_set(&cfg(12, 7)).unwrap();
        assert_eq!(a, b);
        for (pa, pb) in a.iter().zip(&b) {
            assert_eq!(render_video(pa, &cfg(12, 7)), render_video(pb, &cfg(12, 7)));
        }
        let c = plan_set(&cfg(12, 8)).unwrap();
        let rows = |ps: &[VideoPlan]| ps.iter().flat_map(|p| p.rows()).collect::<Vec<_>>();
        assert_ne!(rows(&a), rows(&c));
        assert_ne!(
            render_video(&a[0], &cfg(12, 7)),
            render_video(&c[0], &cfg(12, 8))
        );
    }

    #[test]
    fn a_video_does_not_depend_on_the_set_size() {
        // Only the split may change with the set size; content may not.
        let small = plan_set(&cfg(8, 3)).unwrap();
        let large = plan_set(&cfg(40, 3)).unwrap();
        for (s, l) in small.iter().zip(&large) {
            assert_eq!(
                (&s.asked, &s.shown, &s.scores),
                (&l.asked, &l.shown, &l.scores)
            );
        }
    }

    #[test]
    fn ratings_are_balanced_per_dimension() {
        let plans = plan_set(&cfg(600, 11)).unwrap();
        for d in 0..3 {
            let mut counts = [0usize; 5];
            for p in &plans {
                counts[SCALE.rating(p.scores[d].mos).index()] += 1;
            }
            for (r, &n) in counts.iter().enumerate() {
                let share = n as f64 / plans.len() as f64;
                assert!(
                    (0.12..=0.30).contains(&share),
                    "{:?}: {} has {share:.3} of ratings ({counts:?})",
                    Dimension::ALL[d],
                    Rating::ALL[r]
                );
            }
        }
    }

    #[test]
    fn mos_falls_with_severity_and_generators_are_ordered() {
        let plans = plan_set(&cfg(400, 5)).unwrap();
        for p in &plans {
            for s in &p.scores {
                assert_eq!(s.clean_mos, clean_mos(s.severity));
                assert!((1.0..=5.0).contains(&s.mos));
                // Rater noise (σ = 0.25) stays within 5σ.
                assert!((s.mos - s.clean_mos).abs() < 1.25, "{s:?}");
            }
        }
        let mean = |g: &str| {
            let v: Vec<f32> = plans
                .iter()
                .filter(|p| p.generator.name == g)
                .flat_map(|p| p.scores.iter().map(|s| s.mos))
                .collect();
            v.iter().sum::<f32>() / v.len() as f32
        };
        let means: Vec<f32> = GENERATORS.iter().map(|g| mean(g.name)).collect();
        for w in means.windows(2) {
            assert!(w[0] > w[1] + 0.2, "generator means {means:?}");
        }
    }

    #[test]
    fn split_and_rationale_are_recorded() {
        let plans = plan_set(&cfg(120, 2)).unwrap();
        let test = plans.iter().filter(|p| p.split == Split::Test).count();
        assert_eq!(test, 24, "6 of each generator's 30 videos");
        for g in GENERATORS {
            assert!(
                plans
                    .iter()
                    .any(|p| p.generator.name == g.name && p.split == Split::Test)
            );
        }
        let rows: Vec<ManifestRow> = plans.iter().flat_map(|p| p.rows()).collect();
        assert_eq!(rows.len(), 360);
        assert_eq!(rows[22].id, "v0007-dynamic");
        assert_eq!(rows[22].video, PathBuf::from("videos/v0007.mp4"));
        for r in &rows {
            assert!(r.split.is_some() && r.clean_mos.is_some());
            let why = r.rationale.as_deref().unwrap_or("");
            assert!(why.len() > 20 && why.ends_with('.'), "{why:?}");
            assert!(Rating::ALL.iter().all(|w| !why.contains(w.word())), "{why}");
        }
    }

    #[test]
    fn dynamic_rationales_mention_every_visible_defect() {
        let plans = plan_set(&cfg(300, 9)).unwrap();
        for p in &plans {
            let why = &p.scores[1].rationale;
            let calm =
                why.starts_with("Motion is smooth") || why.starts_with("The scene is steady");
            assert_eq!(
                calm,
                !p.timeline.events.iter().any(|e| e.visible()),
                "{why}"
            );
            if p.timeline.held_frames() > 0 {
                assert!(why.contains("repeat") || why.contains("freezes"), "{why}");
            }
        }
    }

    /// Plans video 0 of seed 1, then overrides its defects.
    fn with_defects(
        visual: Vec<VisualDefect>,
        dynamic: Vec<DynamicDefect>,
    ) -> (VideoPlan, SynthConfig) {
        let c = cfg(1, 1);
        let mut plan = plan_set(&c).unwrap().remove(0);
        // A moving ball alone on a grey floor, so stutter is visible.
        plan.shown.objects = vec![Some(super::super::scene::ObjectSpec {
            shape: super::super::scene::Shape::Ball,
            colour: super::super::scene::Colour::Red,
            motion: super::super::scene::Motion::Right,
        })];
        plan.placements = vec![Placement::sample(0, 1, c.width, c.height, &mut Rng::new(0))];
        plan.visual = visual;
        let rect = Rect {
            x0: 0.0,
            y0: 0.0,
            x1: c.width as f32,
            y1: c.height as f32,
        };
        plan.timeline = build_timeline(
            16,
            c.fps,
            rect,
            &dynamic,
            &plan.placements,
            &[true],
            &mut Rng::new(4),
        );
        (plan, c)
    }

    #[test]
    fn rendered_defects_show_in_the_frames() {
        let frames = |v, d| {
            let (p, c) = with_defects(v, d);
            render_video(&p, &c)
        };
        let clean = frames(vec![], vec![]);
        assert_eq!(clean.len(), 16);
        assert!(
            clean.windows(2).all(|w| w[0].rgb != w[1].rgb),
            "a moving ball changes every frame"
        );
        assert_eq!(clean[3].timestamp, 3.0 / 8.0);

        let stutter = |s| {
            let f = frames(
                vec![],
                vec![DynamicDefect {
                    kind: DynamicKind::Stutter,
                    severity: s,
                }],
            );
            f.windows(2).filter(|w| w[0].rgb == w[1].rgb).count()
        };
        assert_eq!(stutter(0.0), 0);
        assert!(
            stutter(0.5) > 3 && stutter(1.0) > stutter(0.5),
            "{} {}",
            stutter(0.5),
            stutter(1.0)
        );

        let sharpness = |s| {
            let f = frames(
                vec![VisualDefect {
                    kind: VisualKind::Blur,
                    severity: s,
                }],
                vec![],
            );
            f.iter().map(laplacian_energy).sum::<f64>()
        };
        let sharp: Vec<f64> = [0.0, 0.25, 0.5, 0.75, 1.0].map(sharpness).to_vec();
        assert!(sharp.windows(2).all(|w| w[1] < w[0]), "{sharp:?}");

        // Noisy repeated frames stay exact repeats (a frozen generator
        // repeats its grain too).
        let noisy_freeze = frames(
            vec![VisualDefect {
                kind: VisualKind::Noise,
                severity: 0.6,
            }],
            vec![DynamicDefect {
                kind: DynamicKind::Freeze,
                severity: 1.0,
            }],
        );
        let repeats = noisy_freeze
            .windows(2)
            .filter(|w| w[0].rgb == w[1].rgb)
            .count();
        assert_eq!(repeats, 8);
        assert!(mean_abs_diff(&noisy_freeze[0], &clean[0]) > 20.0);
    }
}
