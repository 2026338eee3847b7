//! The vocabulary of synthetic scenes: shapes, colours, motions and
//! backgrounds, the scene a prompt asks for, and the prompt text itself.
//!
//! A scene is a background plus one or two objects. With two objects every
//! shape and every colour is different, so a rationale can name an object by
//! its shape ("the ball") without ambiguity.

use crate::rng::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shape {
    Ball,
    Square,
    Triangle,
    Diamond,
}

impl Shape {
    pub const ALL: [Shape; 4] = [Shape::Ball, Shape::Square, Shape::Triangle, Shape::Diamond];

    pub fn noun(self) -> &'static str {
        match self {
            Shape::Ball => "ball",
            Shape::Square => "square",
            Shape::Triangle => "triangle",
            Shape::Diamond => "diamond",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Colour {
    Red,
    Green,
    Blue,
    Yellow,
    Purple,
}

impl Colour {
    pub const ALL: [Colour; 5] = [
        Colour::Red,
        Colour::Green,
        Colour::Blue,
        Colour::Yellow,
        Colour::Purple,
    ];

    pub fn word(self) -> &'static str {
        match self {
            Colour::Red => "red",
            Colour::Green => "green",
            Colour::Blue => "blue",
            Colour::Yellow => "yellow",
            Colour::Purple => "purple",
        }
    }

    /// Saturated sRGB values, far apart so they survive blur, noise and
    /// 4:2:0 chroma subsampling.
    pub fn rgb(self) -> [u8; 3] {
        match self {
            Colour::Red => [220, 40, 40],
            Colour::Green => [40, 200, 60],
            Colour::Blue => [40, 80, 230],
            Colour::Yellow => [240, 220, 40],
            Colour::Purple => [160, 60, 210],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Motion {
    Still,
    Left,
    Right,
    Up,
    Down,
    Bounce,
}

impl Motion {
    pub const ALL: [Motion; 6] = [
        Motion::Still,
        Motion::Left,
        Motion::Right,
        Motion::Up,
        Motion::Down,
        Motion::Bounce,
    ];

    /// Third-person phrase: "a red ball *moves left*".
    pub fn phrase(self) -> &'static str {
        match self {
            Motion::Still => "stays still",
            Motion::Left => "moves left",
            Motion::Right => "moves right",
            Motion::Up => "moves up",
            Motion::Down => "moves down",
            Motion::Bounce => "bounces",
        }
    }

    /// Infinitive: "it should *move left*".
    pub fn infinitive(self) -> &'static str {
        match self {
            Motion::Still => "stay still",
            Motion::Left => "move left",
            Motion::Right => "move right",
            Motion::Up => "move up",
            Motion::Down => "move down",
            Motion::Bounce => "bounce",
        }
    }

    pub fn is_moving(self) -> bool {
        self != Motion::Still
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Background {
    GreyFloor,
    GreenLawn,
    DarkRoom,
    SandyBeach,
}

impl Background {
    pub const ALL: [Background; 4] = [
        Background::GreyFloor,
        Background::GreenLawn,
        Background::DarkRoom,
        Background::SandyBeach,
    ];

    /// Noun phrase used after "over": "over a grey floor".
    pub fn phrase(self) -> &'static str {
        match self {
            Background::GreyFloor => "a grey floor",
            Background::GreenLawn => "a green lawn",
            Background::DarkRoom => "the floor of a dark room",
            Background::SandyBeach => "a sandy beach",
        }
    }

    /// (upper part: wall or sky, lower part: ground) colours.
    pub fn palette(self) -> ([u8; 3], [u8; 3]) {
        match self {
            Background::GreyFloor => ([170, 170, 175], [115, 115, 120]),
            Background::GreenLawn => ([150, 190, 230], [70, 120, 55]),
            Background::DarkRoom => ([30, 30, 40], [60, 55, 55]),
            Background::SandyBeach => ([140, 195, 235], [205, 185, 140]),
        }
    }

    /// Object colours that would blend into this background.
    pub fn clashes_with(self, colour: Colour) -> bool {
        matches!(
            (self, colour),
            (Background::GreenLawn, Colour::Green) | (Background::SandyBeach, Colour::Yellow)
        )
    }
}

/// One object of a scene.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectSpec {
    pub shape: Shape,
    pub colour: Colour,
    pub motion: Motion,
}

impl ObjectSpec {
    /// "red ball".
    pub fn name(&self) -> String {
        format!("{} {}", self.colour.word(), self.shape.noun())
    }
}

/// What a prompt asks for (or what a video shows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SceneSpec {
    pub background: Background,
    /// One or two objects. Object `i` lives in region `i` of the frame
    /// (whole frame for one object, left/right half for two).
    pub objects: Vec<ObjectSpec>,
}

/// Probability that a scene has two objects.
const TWO_OBJECTS: f64 = 0.4;

impl SceneSpec {
    /// Draws a scene: a background, then one or two objects with distinct
    /// shapes and distinct colours, none blending into the background.
    pub fn sample(rng: &mut Rng) -> SceneSpec {
        let background = Background::ALL[rng.index(Background::ALL.len())];
        let count = if rng.bernoulli(TWO_OBJECTS) { 2 } else { 1 };
        let mut shapes = Shape::ALL.to_vec();
        rng.shuffle(&mut shapes);
        let mut colours: Vec<Colour> = Colour::ALL
            .into_iter()
            .filter(|&c| !background.clashes_with(c))
            .collect();
        rng.shuffle(&mut colours);
        let objects = (0..count)
            .map(|i| ObjectSpec {
                shape: shapes[i],
                colour: colours[i],
                motion: Motion::ALL[rng.index(Motion::ALL.len())],
            })
            .collect();
        SceneSpec {
            background,
            objects,
        }
    }

    /// The generation prompt: "a red ball moves left over a grey floor", or
    /// "a red ball moves left and a blue square stays still over a grey floor".
    pub fn prompt(&self) -> String {
        let clauses: Vec<String> = self
            .objects
            .iter()
            .map(|o| format!("a {} {}", o.name(), o.motion.phrase()))
            .collect();
        format!(
            "{} over {}",
            clauses.join(" and "),
            self.background.phrase()
        )
    }

    /// Whether any object moves (stutter and freezes are invisible otherwise).
    pub fn has_motion(&self) -> bool {
        self.objects.iter().any(|o| o.motion.is_moving())
    }
}

/// The two-object scene the synthetic-data tests share: a red ball moving
/// left and a blue square standing still over a grey floor.
#[cfg(test)]
impl SceneSpec {
    pub(crate) fn red_ball_and_blue_square() -> SceneSpec {
        SceneSpec {
            background: Background::GreyFloor,
            objects: vec![
                ObjectSpec {
                    shape: Shape::Ball,
                    colour: Colour::Red,
                    motion: Motion::Left,
                },
                ObjectSpec {
                    shape: Shape::Square,
                    colour: Colour::Blue,
                    motion: Motion::Still,
                },
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_read_naturally() {
        let scene = SceneSpec::red_ball_and_blue_square();
        assert_eq!(
            scene.prompt(),
            "a red ball moves left and a blue square stays still over a grey floor"
        );
    }

    #[test]
    fn sampled_objects_are_distinct_and_visible() {
        let mut rng = Rng::new(5);
        let mut two = 0;
        for _ in 0..300 {
            let s = SceneSpec::sample(&mut rng);
            assert!((1..=2).contains(&s.objects.len()));
            for o in &s.objects {
                assert!(!s.background.clashes_with(o.colour), "{s:?}");
            }
            if let [a, b] = s.objects[..] {
                two += 1;
                assert_ne!(a.shape, b.shape);
                assert_ne!(a.colour, b.colour);
            }
        }
        assert!((80..160).contains(&two), "{two} two-object scenes of 300");
    }
}
