//! Short human-style attributions of each score, like the paper's
//! rationales: they name what is visibly wrong (or that nothing is), and
//! never the rating word itself, since the rated MOS carries rater noise
//! the rationale cannot know.

use super::alignment::{Mismatch, ShownScene};
use super::dynamic::DynamicEvent;
use super::scene::{ObjectSpec, SceneSpec};
use super::visual::{VisualDefect, VisualKind};

/// Below this severity a visual defect cannot be seen (blur σ < 0.12 px,
/// grain σ < 3 grey levels, blocks blended 5% towards their mean).
const INVISIBLE: f32 = 0.05;

fn degree(severity: f32) -> &'static str {
    match severity {
        s if s < 0.2 => "barely visible",
        s if s < 0.4 => "slight",
        s if s < 0.6 => "noticeable",
        s if s < 0.8 => "strong",
        _ => "severe",
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// "the red ball", "the red ball and the blue square", or a fallback.
fn the_objects(objects: &[&ObjectSpec], fallback: &str) -> String {
    match objects {
        [] => fallback.to_string(),
        [one] => format!("the {}", one.name()),
        many => many
            .iter()
            .map(|o| format!("the {}", o.name()))
            .collect::<Vec<_>>()
            .join(" and "),
    }
}

/// Singular or plural verb for a subject of these objects.
fn verb(objects: &[&ObjectSpec], one: &'static str, many: &'static str) -> &'static str {
    if objects.len() > 1 { many } else { one }
}

pub fn visual(defects: &[VisualDefect], shown: &ShownScene) -> String {
    let drawn: Vec<&ObjectSpec> = shown.objects.iter().flatten().collect();
    let objects = the_objects(&drawn, "the background");
    let mut flaws: Vec<&VisualDefect> =
        defects.iter().filter(|d| d.severity >= INVISIBLE).collect();
    if flaws.is_empty() {
        return format!(
            "Sharp, clean frames with no visible artifacts; the edges of {objects} are crisp."
        );
    }
    flaws.sort_by(|a, b| b.severity.total_cmp(&a.severity));
    let mut out: Vec<String> = flaws
        .iter()
        .map(|d| {
            let how = capitalise(degree(d.severity));
            match d.kind {
                VisualKind::Blur => {
                    format!(
                        "{how} blur softens the edges of {objects} and the pattern on the ground."
                    )
                }
                VisualKind::Blocking => {
                    format!("{how} blocking breaks the frames into square tiles of flat colour.")
                }
                VisualKind::Noise => format!("{how} noise speckles every frame."),
            }
        })
        .collect();
    let worst = flaws[0].severity;
    if worst >= 0.6 {
        out.push("Fine detail is lost.".into());
    } else if worst < 0.2 {
        out.push("Otherwise the frames are sharp and clean.".into());
    }
    out.join(" ")
}

pub fn dynamic(events: &[DynamicEvent], shown: &ShownScene) -> String {
    let drawn: Vec<&ObjectSpec> = shown.objects.iter().flatten().collect();
    let moving: Vec<&ObjectSpec> = drawn
        .iter()
        .copied()
        .filter(|o| o.motion.is_moving())
        .collect();
    let flaws: Vec<&DynamicEvent> = events.iter().filter(|e| e.visible()).collect();
    if flaws.is_empty() {
        return match (moving.first(), drawn.first()) {
            (Some(m), _) => format!(
                "Motion is smooth and continuous; the {} {} steadily, with no jumps or frozen frames.",
                m.name(),
                m.motion.phrase()
            ),
            (None, Some(d)) => format!(
                "The scene is steady: the {} stays still without shaking, jumping or flickering.",
                d.name()
            ),
            (None, None) => "The scene is steady, with no jumps, shaking or frozen frames.".into(),
        };
    }
    let movers = the_objects(&moving, "the scene");
    let all = the_objects(&drawn, "the scene");
    let mut out: Vec<String> = flaws
        .iter()
        .map(|e| match **e {
            DynamicEvent::Stutter { severity, run, .. } if severity < 0.2 || run < 1.5 => {
                format!(
                    "An occasional frame repeats, so {movers} {} with a barely visible stutter.",
                    verb(&moving, "moves", "move")
                )
            }
            DynamicEvent::Stutter { severity, run, .. } => format!(
                "The motion stutters ({}): frames repeat in runs of about {}, so {movers} {} in jerks.",
                degree(severity),
                run.round(),
                verb(&moving, "moves", "move")
            ),
            DynamicEvent::Freeze { from, to, .. } => format!(
                "The video freezes from {from:.1} s to {to:.1} s, then {movers} {} ahead.",
                verb(&moving, "skips", "skip")
            ),
            DynamicEvent::Jitter { severity, .. } if drawn.is_empty() => {
                format!("The whole picture shakes ({} jitter).", degree(severity))
            }
            DynamicEvent::Jitter { severity, .. } => format!(
                "{} {} ({} jitter).",
                capitalise(&all),
                verb(&drawn, "shakes around its path", "shake around their paths"),
                degree(severity)
            ),
            DynamicEvent::Jump {
                severity,
                object,
                at,
                pixels,
            } => {
                let what = match object.and_then(|o| shown.objects[o]) {
                    Some(o) => format!("the {}", o.name()),
                    None => "the whole picture".to_string(),
                };
                format!(
                    "At {at:.1} s {what} jumps to a new position ({} jump of about {pixels:.0} px).",
                    degree(severity)
                )
            }
        })
        .collect();
    let worst = flaws.iter().map(|e| e.severity()).fold(0.0, f32::max);
    if worst >= 0.6 {
        out.push("The movement is not physically plausible.".into());
    }
    out.join(" ")
}

pub fn alignment(asked: &SceneSpec, shown: &ShownScene, mismatches: &[Mismatch]) -> String {
    if mismatches.is_empty() {
        return format!("The video matches the prompt: {}.", asked.prompt());
    }
    let all_missing = shown.objects.iter().all(Option::is_none);
    let mut out = Vec::new();
    for (a, s) in asked.objects.iter().zip(&shown.objects) {
        let noun = a.shape.noun();
        let Some(s) = s else {
            if all_missing && asked.objects.len() == 1 {
                out.push(format!(
                    "The prompt asks for a {} that {}, but no {noun} appears; the video shows only {}.",
                    a.name(),
                    a.motion.phrase(),
                    asked.background.phrase()
                ));
            } else {
                out.push(format!(
                    "The prompt asks for a {}, but no {noun} appears.",
                    a.name()
                ));
            }
            continue;
        };
        let looks = match (a.shape == s.shape, a.colour == s.colour) {
            (true, true) => None,
            (true, false) => Some(format!(
                "The prompt asks for a {} but the {noun} is {}.",
                a.name(),
                s.colour.word()
            )),
            _ => Some(format!(
                "The prompt asks for a {} but a {} appears instead.",
                a.name(),
                s.name()
            )),
        };
        let wrong_look = looks.is_some();
        out.extend(looks);
        if a.motion != s.motion {
            let subject = if wrong_look {
                "It".to_string()
            } else {
                format!("The {}", s.name())
            };
            out.push(format!(
                "{subject} should {} but it {}.",
                a.motion.infinitive(),
                s.motion.phrase()
            ));
        } else if !wrong_look {
            out.push(format!("The {} {} as asked.", s.name(), s.motion.phrase()));
        }
    }
    if all_missing && asked.objects.len() > 1 {
        out.push(format!(
            "The video shows only {}.",
            asked.background.phrase()
        ));
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::super::alignment::shown_scene;
    use super::super::scene::{Colour, Motion};
    use super::*;

    #[test]
    fn alignment_rationales_name_the_mismatch() {
        let asked = SceneSpec::red_ball_and_blue_square();
        let m = [
            Mismatch::Colour {
                object: 0,
                shown: Colour::Yellow,
            },
            Mismatch::Motion {
                object: 1,
                shown: Motion::Bounce,
            },
        ];
        assert_eq!(
            alignment(&asked, &shown_scene(&asked, &m), &m),
            "The prompt asks for a red ball but the ball is yellow. The blue square should stay \
             still but it bounces."
        );
        let m = [Mismatch::Missing { object: 1 }];
        assert_eq!(
            alignment(&asked, &shown_scene(&asked, &m), &m),
            "The red ball moves left as asked. The prompt asks for a blue square, but no square appears."
        );
        assert_eq!(
            alignment(&asked, &shown_scene(&asked, &[]), &[]),
            "The video matches the prompt: a red ball moves left and a blue square stays still \
             over a grey floor."
        );
    }

    #[test]
    fn visual_and_dynamic_rationales() {
        let asked = SceneSpec::red_ball_and_blue_square();
        let shown = shown_scene(&asked, &[]);
        assert_eq!(
            visual(&[], &shown),
            "Sharp, clean frames with no visible artifacts; the edges of the red ball and the \
             blue square are crisp."
        );
        let d = [
            VisualDefect {
                kind: VisualKind::Noise,
                severity: 0.3,
            },
            VisualDefect {
                kind: VisualKind::Blur,
                severity: 0.7,
            },
        ];
        assert_eq!(
            visual(&d, &shown),
            "Strong blur softens the edges of the red ball and the blue square and the \
             pattern on the ground. Slight noise speckles every frame. Fine detail is lost."
        );
        let e = [DynamicEvent::Jump {
            severity: 0.5,
            object: Some(0),
            at: 1.375,
            pixels: 24.0,
        }];
        assert_eq!(
            dynamic(&e, &shown),
            "At 1.4 s the red ball jumps to a new position (noticeable jump of about 24 px)."
        );
        assert!(
            dynamic(&[], &shown)
                .starts_with("Motion is smooth and continuous; the red ball moves left")
        );
    }
}
