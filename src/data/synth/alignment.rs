//! Text–video alignment defects: the video shows something other than its
//! prompt asks for — a wrong colour, shape or motion, or a missing object.
//!
//! Severity is a level 0–4 counting mismatched facts. Each prompt object
//! states three facts (shape, colour, motion); a missing object breaks all
//! three of its facts, and in a one-object scene it breaks the whole prompt
//! (level 4). Level recipes:
//!
//! | level | one object | two objects |
//! |---|---|---|
//! | 0 | matches | matches |
//! | 1 | 1 fact wrong | 1 fact wrong |
//! | 2 | 2 facts wrong | 2 facts wrong |
//! | 3 | all 3 facts wrong | 3 facts wrong, or one object missing |
//! | 4 | object missing | 4 facts wrong, or one missing + 1 fact wrong |

use super::scene::{Background, Colour, Motion, ObjectSpec, SceneSpec, Shape};
use crate::rng::Rng;

/// The most severe alignment level.
pub const MAX_LEVEL: u8 = 4;

/// One way the video departs from its prompt (`object` indexes the prompt's
/// objects).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mismatch {
    Colour { object: usize, shown: Colour },
    Shape { object: usize, shown: Shape },
    Motion { object: usize, shown: Motion },
    Missing { object: usize },
}

/// What the video actually shows: slot `i` is the prompt's object `i` as
/// drawn, or `None` when it is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShownScene {
    pub background: Background,
    pub objects: Vec<Option<ObjectSpec>>,
}

impl ShownScene {
    pub fn has_motion(&self) -> bool {
        self.objects.iter().flatten().any(|o| o.motion.is_moving())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fact {
    Shape,
    Colour,
    Motion,
}

/// Draws the mismatches of an alignment `level` (0–4) for a prompt scene.
/// Wrong colours and shapes are never ones the prompt uses elsewhere (a
/// "blue ball" next to a prompted blue square would be ambiguous), and
/// never colours that vanish into the background.
pub fn sample_mismatches(asked: &SceneSpec, level: u8, rng: &mut Rng) -> Vec<Mismatch> {
    let n = asked.objects.len();
    let (wrong_facts, missing) = match (n, level.min(MAX_LEVEL)) {
        (_, 0) => (0, 0),
        (1, 4) => (0, 1),
        (1, l) => (usize::from(l), 0),
        (_, 3) if rng.bernoulli(0.5) => (0, 1),
        (_, 4) if rng.bernoulli(0.5) => (1, 1),
        (_, l) => (usize::from(l), 0),
    };
    let mut out = Vec::new();
    let mut missing_objects: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut missing_objects);
    missing_objects.truncate(missing);
    out.extend(
        missing_objects
            .iter()
            .map(|&object| Mismatch::Missing { object }),
    );
    // Facts of the objects still drawn, in random order.
    let mut slots: Vec<(usize, Fact)> = (0..n)
        .filter(|o| !missing_objects.contains(o))
        .flat_map(|o| [(o, Fact::Shape), (o, Fact::Colour), (o, Fact::Motion)])
        .collect();
    rng.shuffle(&mut slots);
    for &(object, fact) in slots.iter().take(wrong_facts) {
        // Exclude what the prompt names and what is already drawn, so two
        // drawn objects never share a shape or a colour.
        let drawn = shown_scene(asked, &out);
        let drawn = drawn.objects.iter().flatten();
        let spec = asked.objects[object];
        out.push(match fact {
            Fact::Shape => {
                let options: Vec<Shape> = Shape::ALL
                    .into_iter()
                    .filter(|s| {
                        asked.objects.iter().all(|o| o.shape != *s)
                            && drawn.clone().all(|o| o.shape != *s)
                    })
                    .collect();
                Mismatch::Shape {
                    object,
                    shown: options[rng.index(options.len())],
                }
            }
            Fact::Colour => {
                let options: Vec<Colour> = Colour::ALL
                    .into_iter()
                    .filter(|c| {
                        asked.objects.iter().all(|o| o.colour != *c)
                            && drawn.clone().all(|o| o.colour != *c)
                            && !asked.background.clashes_with(*c)
                    })
                    .collect();
                Mismatch::Colour {
                    object,
                    shown: options[rng.index(options.len())],
                }
            }
            Fact::Motion => {
                let options: Vec<Motion> = Motion::ALL
                    .into_iter()
                    .filter(|m| *m != spec.motion)
                    .collect();
                Mismatch::Motion {
                    object,
                    shown: options[rng.index(options.len())],
                }
            }
        });
    }
    out
}

/// Applies mismatches to the prompt scene.
pub fn shown_scene(asked: &SceneSpec, mismatches: &[Mismatch]) -> ShownScene {
    let mut objects: Vec<Option<ObjectSpec>> = asked.objects.iter().copied().map(Some).collect();
    for m in mismatches {
        match *m {
            Mismatch::Missing { object } => objects[object] = None,
            Mismatch::Colour { object, shown } => {
                if let Some(o) = objects[object].as_mut() {
                    o.colour = shown;
                }
            }
            Mismatch::Shape { object, shown } => {
                if let Some(o) = objects[object].as_mut() {
                    o.shape = shown;
                }
            }
            Mismatch::Motion { object, shown } => {
                if let Some(o) = objects[object].as_mut() {
                    o.motion = shown;
                }
            }
        }
    }
    ShownScene {
        background: asked.background,
        objects,
    }
}

/// Number of prompt facts (shape, colour, motion per object) the shown
/// scene gets wrong.
pub fn wrong_facts(asked: &SceneSpec, shown: &ShownScene) -> usize {
    asked
        .objects
        .iter()
        .zip(&shown.objects)
        .map(|(a, s)| match s {
            None => 3,
            Some(s) => {
                usize::from(a.shape != s.shape)
                    + usize::from(a.colour != s.colour)
                    + usize::from(a.motion != s.motion)
            }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_break_the_stated_number_of_facts() {
        let mut rng = Rng::new(21);
        for _ in 0..200 {
            let asked = SceneSpec::sample(&mut rng);
            let mut last = 0;
            for level in 0..=MAX_LEVEL {
                let m = sample_mismatches(&asked, level, &mut rng);
                let shown = shown_scene(&asked, &m);
                let wrong = wrong_facts(&asked, &shown);
                let missing = shown.objects.iter().filter(|o| o.is_none()).count();
                match (asked.objects.len(), level) {
                    (1, 4) => assert_eq!(missing, 1),
                    (_, l) => assert_eq!(wrong, usize::from(l), "{asked:?} {m:?}"),
                }
                assert!(
                    wrong >= last,
                    "more severe levels break at least as many facts"
                );
                last = wrong;
                for o in shown.objects.iter().flatten() {
                    assert!(!asked.background.clashes_with(o.colour));
                }
                if let [Some(a), Some(b)] = shown.objects[..] {
                    assert_ne!(a.shape, b.shape);
                    assert_ne!(a.colour, b.colour);
                }
            }
        }
    }
}
