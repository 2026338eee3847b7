//! Dynamic-quality defects: stutter, freezes, jitter and jumps, realised as
//! a [`Timeline`] — which moment of the ideal motion each output frame shows
//! and how far each object is displaced from its path.
//!
//! Strengths are monotone in severity `s ∈ [0, 1]`:
//! - stutter: playback advances only every `1 + 3s` frames (runs of held
//!   frames, then a skip);
//! - freeze: `round(0.5·s·n)` consecutive frames hold, then the motion
//!   skips ahead to where it should be;
//! - jitter: every object shakes by `N(0, (0.1·s·short side)²)` per axis;
//! - jump: one object teleports by `0.5·s` of its region along one axis and
//!   stays displaced.
//!
//! Stutter and freezes only show when something moves, so a scene without
//! motion gets jitter or jumps only. A scene with no object at all (the
//! prompt's only object is missing) shakes or jumps as a whole: the camera
//! takes the displacement.

use super::render::{Placement, Rect};
use crate::rng::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DynamicKind {
    Stutter,
    Freeze,
    Jitter,
    Jump,
}

impl DynamicKind {
    pub const ALL: [DynamicKind; 4] = [
        DynamicKind::Stutter,
        DynamicKind::Freeze,
        DynamicKind::Jitter,
        DynamicKind::Jump,
    ];

    /// Whether the defect is visible in a scene where nothing moves.
    pub fn shows_without_motion(self) -> bool {
        matches!(self, DynamicKind::Jitter | DynamicKind::Jump)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DynamicDefect {
    pub kind: DynamicKind,
    pub severity: f32,
}

/// What happened, in terms a rationale can state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DynamicEvent {
    /// Frames repeat in runs of about `run` frames; `held` frames in all
    /// repeat their predecessor.
    Stutter {
        severity: f32,
        run: f32,
        held: usize,
    },
    /// The picture holds from `from` to `to` seconds.
    Freeze { severity: f32, from: f64, to: f64 },
    /// Objects shake with this standard deviation in pixels.
    Jitter { severity: f32, pixels: f32 },
    /// Object slot `object` (or the whole picture, `None`) teleports at
    /// `at` seconds by `pixels`.
    Jump {
        severity: f32,
        object: Option<usize>,
        at: f64,
        pixels: f32,
    },
}

/// Displacements below these sizes (pixels) cannot be seen; held frames
/// always can.
const VISIBLE_JUMP: f32 = 1.0;
const VISIBLE_JITTER: f32 = 0.5;

impl DynamicEvent {
    /// Whether the event changes what a viewer sees.
    pub fn visible(&self) -> bool {
        match *self {
            DynamicEvent::Stutter { held, .. } => held > 0,
            DynamicEvent::Freeze { .. } => true,
            DynamicEvent::Jitter { pixels, .. } => pixels >= VISIBLE_JITTER,
            DynamicEvent::Jump { pixels, .. } => pixels >= VISIBLE_JUMP,
        }
    }

    pub fn severity(&self) -> f32 {
        match *self {
            DynamicEvent::Stutter { severity, .. }
            | DynamicEvent::Freeze { severity, .. }
            | DynamicEvent::Jitter { severity, .. }
            | DynamicEvent::Jump { severity, .. } => severity,
        }
    }
}

/// Per output frame: the normalised time of the ideal motion it shows and
/// each object's extra displacement.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    /// Index of the ideal frame shown at each output frame (`n` entries).
    pub source: Vec<usize>,
    /// `offset[frame][slot]`: displacement in pixels of the object in slot
    /// `slot` (one slot per prompt object, missing objects included).
    pub offset: Vec<Vec<[f32; 2]>>,
    /// `camera[frame]`: displacement of the whole picture in pixels (only
    /// used when no object is drawn).
    pub camera: Vec<[f32; 2]>,
    pub events: Vec<DynamicEvent>,
}

impl Timeline {
    /// Normalised time `∈ [0, 1]` of the ideal motion at output frame `i`.
    pub fn time(&self, i: usize) -> f32 {
        let n = self.source.len();
        if n < 2 {
            0.0
        } else {
            self.source[i] as f32 / (n - 1) as f32
        }
    }

    /// Output frames that repeat the previous frame's moment.
    pub fn held_frames(&self) -> usize {
        self.source.windows(2).filter(|w| w[0] == w[1]).count()
    }
}

/// Builds the timeline of `n` frames at `fps` for the given defects in a
/// `frame_rect` picture. `present[slot]` says which object slots are drawn
/// (jumps pick one of those). Defects apply in a fixed order (stutter,
/// freeze, jitter, jump).
pub fn build_timeline(
    n: usize,
    fps: u32,
    frame_rect: Rect,
    defects: &[DynamicDefect],
    placements: &[Placement],
    present: &[bool],
    rng: &mut Rng,
) -> Timeline {
    let short_side = (frame_rect.x1 - frame_rect.x0).min(frame_rect.y1 - frame_rect.y0);
    let mut source: Vec<usize> = (0..n).collect();
    let mut offset = vec![vec![[0f32; 2]; placements.len()]; n];
    let mut camera = vec![[0f32; 2]; n];
    let empty = !present.contains(&true);
    let mut events = Vec::new();
    let seconds = |frame: usize| frame as f64 / f64::from(fps);
    let mut sorted = defects.to_vec();
    sorted.sort_by_key(|d| DynamicKind::ALL.iter().position(|&k| k == d.kind));
    for d in sorted {
        let s = d.severity;
        match d.kind {
            DynamicKind::Stutter => {
                let run = 1.0 + 3.0 * s;
                let phase = rng.uniform(0.0, f64::from(run)) as f32;
                // A frame is fresh when it starts a new run; held frames
                // repeat the last fresh one.
                let mut last_fresh = 0;
                let ideal = source.clone();
                for (i, shown) in source.iter_mut().enumerate().skip(1) {
                    let fresh = ((i as f32 + phase) / run).floor()
                        != ((i as f32 - 1.0 + phase) / run).floor();
                    if fresh {
                        last_fresh = i;
                    }
                    *shown = ideal[last_fresh];
                }
                let held = source.windows(2).filter(|w| w[0] == w[1]).count();
                events.push(DynamicEvent::Stutter {
                    severity: s,
                    run,
                    held,
                });
            }
            DynamicKind::Freeze => {
                let len = (0.5 * s * n as f32).round() as usize;
                if len == 0 || n < len + 2 {
                    continue;
                }
                // Start after the first frame and end before the last, so
                // the skip after the freeze is visible.
                let start = 1 + rng.index(n - len - 1);
                let held = source[start - 1];
                for slot in source.iter_mut().skip(start).take(len) {
                    *slot = held;
                }
                events.push(DynamicEvent::Freeze {
                    severity: s,
                    from: seconds(start),
                    to: seconds(start + len),
                });
            }
            DynamicKind::Jitter => {
                let pixels = 0.1 * s * short_side;
                for (frame, cam) in offset.iter_mut().zip(camera.iter_mut()) {
                    let targets = frame
                        .iter_mut()
                        .zip(present)
                        .filter(|(_, p)| **p)
                        .map(|(o, _)| o)
                        .chain(empty.then_some(cam));
                    for o in targets {
                        o[0] += pixels * rng.normal() as f32;
                        o[1] += pixels * rng.normal() as f32;
                    }
                }
                events.push(DynamicEvent::Jitter {
                    severity: s,
                    pixels,
                });
            }
            DynamicKind::Jump => {
                // Jump on a fresh frame (not one that repeats its
                // predecessor), at least two frames in, so the position
                // before the jump is seen.
                let fresh: Vec<usize> = (2..n).filter(|&i| source[i] != source[i - 1]).collect();
                if fresh.is_empty() {
                    continue;
                }
                let at = fresh[rng.index(fresh.len())];
                let slots: Vec<usize> = (0..present.len()).filter(|&i| present[i]).collect();
                let object = (!slots.is_empty()).then(|| slots[rng.index(slots.len())]);
                let horizontal = rng.bernoulli(0.5);
                let axis = usize::from(!horizontal);
                // The camera's "region" is the whole frame.
                let (region, home) = match object {
                    Some(o) => (placements[o].region, placements[o].home[axis]),
                    None => (
                        frame_rect,
                        if horizontal {
                            frame_rect.x1 / 2.0
                        } else {
                            frame_rect.y1 / 2.0
                        },
                    ),
                };
                let (lo, hi) = if horizontal {
                    (region.x0, region.x1)
                } else {
                    (region.y0, region.y1)
                };
                let pixels = 0.5 * s * (hi - lo);
                // Jump towards the side of the region with more room, so the
                // clamp at the border does not swallow the jump.
                let sign = if home > (lo + hi) / 2.0 { -1.0 } else { 1.0 };
                for i in at..n {
                    let target = match object {
                        Some(o) => &mut offset[i][o],
                        None => &mut camera[i],
                    };
                    target[axis] += sign * pixels;
                }
                events.push(DynamicEvent::Jump {
                    severity: s,
                    object,
                    at: seconds(at),
                    pixels,
                });
            }
        }
    }
    Timeline {
        source,
        offset,
        camera,
        events,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeline(kind: DynamicKind, severity: f32) -> Timeline {
        let mut rng = Rng::new(9);
        let p = Placement::sample(0, 1, 96, 64, &mut rng);
        let rect = Rect {
            x0: 0.0,
            y0: 0.0,
            x1: 96.0,
            y1: 64.0,
        };
        build_timeline(
            16,
            8,
            rect,
            &[DynamicDefect { kind, severity }],
            &[p],
            &[true],
            &mut rng,
        )
    }

    #[test]
    fn clean_timeline_is_the_identity() {
        for kind in DynamicKind::ALL {
            let t = timeline(kind, 0.0);
            assert_eq!(t.source, (0..16).collect::<Vec<_>>(), "{kind:?}");
            assert!(
                t.offset.iter().flatten().all(|o| *o == [0.0, 0.0]),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn stutter_and_freeze_hold_more_frames_with_severity() {
        for kind in [DynamicKind::Stutter, DynamicKind::Freeze] {
            let held: Vec<usize> = [0.0, 0.3, 0.6, 1.0]
                .iter()
                .map(|&s| timeline(kind, s).held_frames())
                .collect();
            for w in held.windows(2) {
                assert!(w[1] > w[0], "{kind:?}: {held:?}");
            }
            // The motion still reaches its end or skips ahead: time never
            // runs backwards.
            let t = timeline(kind, 1.0);
            assert!(t.source.windows(2).all(|w| w[1] >= w[0]));
        }
        // Runs of 4 at full stutter: 16 frames hold ≈ 12 times.
        assert!(timeline(DynamicKind::Stutter, 1.0).held_frames() >= 11);
        assert_eq!(timeline(DynamicKind::Freeze, 1.0).held_frames(), 8);
    }

    #[test]
    fn jitter_and_jump_displace_more_with_severity() {
        let size = |t: &Timeline| -> f32 {
            t.offset
                .iter()
                .flatten()
                .map(|o| o[0].abs() + o[1].abs())
                .sum()
        };
        for kind in [DynamicKind::Jitter, DynamicKind::Jump] {
            let d: Vec<f32> = [0.0, 0.3, 0.6, 1.0]
                .iter()
                .map(|&s| size(&timeline(kind, s)))
                .collect();
            for w in d.windows(2) {
                assert!(w[1] > w[0], "{kind:?}: {d:?}");
            }
        }
        let t = timeline(DynamicKind::Jump, 1.0);
        let DynamicEvent::Jump { at, pixels, .. } = t.events[0] else {
            panic!("{:?}", t.events)
        };
        let frame = (at * 8.0) as usize;
        assert_eq!(t.offset[frame - 1][0], [0.0, 0.0]);
        let o = t.offset[frame][0];
        assert_eq!(o[0].abs() + o[1].abs(), pixels);
    }
}
