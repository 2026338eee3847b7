//! Rasterising a scene: the background, each object's home placement and
//! motion path, and anti-aliased shapes drawn from signed distance fields.
//!
//! Coordinates are pixels with the origin at the top-left corner and y
//! pointing down; a pixel's centre is at `(x + 0.5, y + 0.5)`.

use super::scene::{Background, Colour, Motion, Shape};
use crate::rng::Rng;
use crate::video::Frame;

/// An axis-aligned rectangle in pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rect {
    pub x0: f32,
    pub y0: f32,
    pub x1: f32,
    pub y1: f32,
}

/// Where one object lives: its region of the frame (whole frame for one
/// object, left or right half for two, so objects never overlap), its size
/// and the centre its motion starts from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    pub region: Rect,
    pub radius: f32,
    pub home: [f32; 2],
}

/// Gap kept between an object and its region's border, pixels.
const MARGIN: f32 = 2.0;

impl Placement {
    /// Places object `index` of `count` in a `width`×`height` frame with a
    /// little random variation in size and home position.
    pub fn sample(index: usize, count: usize, width: u32, height: u32, rng: &mut Rng) -> Placement {
        let (w, h) = (width as f32, height as f32);
        let rw = w / count as f32;
        let region = Rect {
            x0: rw * index as f32,
            y0: 0.0,
            x1: rw * (index + 1) as f32,
            y1: h,
        };
        // About an eighth of the short side: ≈8–10 px in a 96×64 clip, big
        // enough that shape and colour survive blur and 4:2:0 chroma.
        let base = 0.13 * w.min(h) * if count == 1 { 1.15 } else { 1.0 };
        let radius = base * rng.uniform(0.9, 1.1) as f32;
        let jitter = |span: f32, rng: &mut Rng| span * rng.uniform(-0.1, 0.1) as f32;
        let home = [
            (region.x0 + region.x1) / 2.0 + jitter(rw, rng),
            (region.y0 + region.y1) / 2.0 + jitter(h, rng),
        ];
        let mut p = Placement {
            region,
            radius,
            home,
        };
        p.home = p.clamp(home);
        p
    }

    /// Keeps a centre inside the region (the whole shape stays visible).
    pub fn clamp(&self, [x, y]: [f32; 2]) -> [f32; 2] {
        let r = self.radius + MARGIN;
        [
            x.clamp(self.region.x0 + r, self.region.x1 - r),
            y.clamp(self.region.y0 + r, self.region.y1 - r),
        ]
    }

    /// Half the distance the centre can travel along x and y.
    fn amplitude(&self) -> [f32; 2] {
        let r = self.radius + MARGIN;
        [
            ((self.region.x1 - self.region.x0) / 2.0 - r).max(0.0),
            ((self.region.y1 - self.region.y0) / 2.0 - r).max(0.0),
        ]
    }

    /// The centre at normalised time `t ∈ [0, 1]` for a motion. Directed
    /// motions cross most of the region at constant speed; a bounce hits the
    /// region's floor twice.
    pub fn position(&self, motion: Motion, t: f32) -> [f32; 2] {
        let [ax, ay] = self.amplitude();
        let [hx, hy] = self.home;
        let cx = (self.region.x0 + self.region.x1) / 2.0;
        let cy = (self.region.y0 + self.region.y1) / 2.0;
        // 90% of the amplitude, so a small jump defect still has room.
        let sweep = 0.9 * (1.0 - 2.0 * t);
        let p = match motion {
            Motion::Still => [hx, hy],
            Motion::Left => [cx + ax * sweep, hy],
            Motion::Right => [cx - ax * sweep, hy],
            Motion::Up => [hx, cy + ay * sweep],
            Motion::Down => [hx, cy - ay * sweep],
            Motion::Bounce => {
                let floor = cy + 0.9 * ay;
                let height = 1.8 * ay * (std::f32::consts::TAU * t).sin().abs();
                [hx, floor - height]
            }
        };
        self.clamp(p)
    }
}

/// One object as drawn in one frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Drawn {
    pub shape: Shape,
    pub colour: Colour,
    pub centre: [f32; 2],
    pub radius: f32,
}

/// Signed distance (pixels, negative inside) from a point to a shape.
fn signed_distance(shape: Shape, dx: f32, dy: f32, r: f32) -> f32 {
    match shape {
        Shape::Ball => (dx * dx + dy * dy).sqrt() - r,
        Shape::Square => {
            // Half-side 0.89 r gives about the ball's area (π r²).
            let h = 0.89 * r;
            let (qx, qy) = (dx.abs() - h, dy.abs() - h);
            let outside = (qx.max(0.0).powi(2) + qy.max(0.0).powi(2)).sqrt();
            outside + qx.max(qy).min(0.0)
        }
        Shape::Diamond => (dx.abs() + dy.abs() - 1.25 * r) * std::f32::consts::FRAC_1_SQRT_2,
        Shape::Triangle => {
            // Equilateral triangle pointing up, centroid at the centre
            // (Quílez's exact SDF, with y flipped to point up).
            let k = 3f32.sqrt();
            let half = 1.35 * r;
            let mut px = dx.abs() - half;
            let mut py = -dy + half / k;
            if px + k * py > 0.0 {
                let (nx, ny) = ((px - k * py) / 2.0, (-k * px - py) / 2.0);
                px = nx;
                py = ny;
            }
            px -= px.clamp(-2.0 * half, 0.0);
            -(px * px + py * py).sqrt() * py.signum()
        }
    }
}

/// Side of the floor tiles in pixels for a clip of this height.
fn tile_size(height: u32) -> u32 {
    (height / 8).max(4)
}

/// The backdrop: wall or sky above a horizon at 45% of the height, a tiled
/// ground below (the tile lines give blur something to soften), shifted by
/// `shift` pixels (a camera shake or jump).
pub fn background(width: u32, height: u32, bg: Background, shift: [i32; 2]) -> Vec<u8> {
    let (upper, ground) = bg.palette();
    let horizon = (height as f32 * 0.45) as i64 + i64::from(shift[1]);
    let tile = i64::from(tile_size(height));
    // Lines are darker on light ground and lighter on dark ground.
    let line_delta: i16 = if ground.iter().map(|&c| u32::from(c)).sum::<u32>() > 300 {
        -35
    } else {
        30
    };
    let mut rgb = Vec::with_capacity((width * height * 3) as usize);
    for y in 0..i64::from(height) {
        for x in 0..i64::from(width) {
            let px = if y < horizon {
                // Slightly lighter towards the top.
                let lift = (20 * (horizon - y) / horizon.max(1)).clamp(0, 20) as i16;
                upper.map(|c| (i16::from(c) + lift).clamp(0, 255) as u8)
            } else if (x - i64::from(shift[0])).rem_euclid(tile) == 0
                || (y - horizon).rem_euclid(tile) == 0
            {
                ground.map(|c| (i16::from(c) + line_delta).clamp(0, 255) as u8)
            } else {
                ground
            };
            rgb.extend_from_slice(&px);
        }
    }
    rgb
}

/// Draws objects over a copy of the backdrop with one pixel of
/// anti-aliasing (coverage = clamp(0.5 − distance, 0, 1)).
pub fn render_frame(
    width: u32,
    height: u32,
    backdrop: &[u8],
    objects: &[Drawn],
    timestamp: f64,
) -> Frame {
    let mut rgb = backdrop.to_vec();
    for obj in objects {
        let reach = 1.6 * obj.radius + 1.0;
        let [cx, cy] = obj.centre;
        let x0 = (cx - reach).floor().max(0.0) as u32;
        let y0 = (cy - reach).floor().max(0.0) as u32;
        let x1 = ((cx + reach).ceil() as u32).min(width);
        let y1 = ((cy + reach).ceil() as u32).min(height);
        let colour = obj.colour.rgb();
        for y in y0..y1 {
            for x in x0..x1 {
                let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
                let cover = (0.5 - signed_distance(obj.shape, dx, dy, obj.radius)).clamp(0.0, 1.0);
                if cover > 0.0 {
                    let i = ((y * width + x) * 3) as usize;
                    for c in 0..3 {
                        let old = f32::from(rgb[i + c]);
                        rgb[i + c] = (old + (f32::from(colour[c]) - old) * cover).round() as u8;
                    }
                }
            }
        }
    }
    Frame {
        timestamp,
        width,
        height,
        rgb,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count_colour(frame: &Frame, colour: Colour) -> usize {
        frame
            .rgb
            .chunks_exact(3)
            .filter(|p| p == &colour.rgb())
            .count()
    }

    #[test]
    fn shapes_have_similar_areas_and_the_right_colour() {
        let backdrop = background(96, 64, Background::GreyFloor, [0, 0]);
        let mut areas = Vec::new();
        for shape in Shape::ALL {
            let obj = Drawn {
                shape,
                colour: Colour::Red,
                centre: [48.0, 32.0],
                radius: 10.0,
            };
            let f = render_frame(96, 64, &backdrop, &[obj], 0.0);
            areas.push(count_colour(&f, Colour::Red));
            assert_eq!(f.pixel(48, 32), Colour::Red.rgb(), "{shape:?}");
            assert_ne!(f.pixel(5, 5), Colour::Red.rgb());
        }
        // π·10² ≈ 314 pixels for the ball, fewer fully covered ones (the
        // anti-aliased rim is mixed); the others about as large.
        for &a in &areas {
            assert!((240..=340).contains(&a), "areas {areas:?}");
        }
    }

    #[test]
    fn triangle_points_up() {
        let backdrop = background(64, 64, Background::DarkRoom, [0, 0]);
        let obj = Drawn {
            shape: Shape::Triangle,
            colour: Colour::Yellow,
            centre: [32.0, 32.0],
            radius: 12.0,
        };
        let f = render_frame(64, 64, &backdrop, &[obj], 0.0);
        let width_at = |y: u32| {
            (0..64)
                .filter(|&x| f.pixel(x, y) == Colour::Yellow.rgb())
                .count()
        };
        assert!(
            width_at(24) < width_at(36),
            "{} vs {}",
            width_at(24),
            width_at(36)
        );
    }

    #[test]
    fn motions_stay_in_region_and_move_the_right_way() {
        let mut rng = Rng::new(1);
        let p = Placement::sample(1, 2, 96, 64, &mut rng);
        assert_eq!(p.region.x0, 48.0);
        for motion in Motion::ALL {
            for i in 0..=10 {
                let [x, y] = p.position(motion, i as f32 / 10.0);
                assert!(
                    x - p.radius >= 48.0 && x + p.radius <= 96.0,
                    "{motion:?} x={x}"
                );
                assert!(
                    y - p.radius >= 0.0 && y + p.radius <= 64.0,
                    "{motion:?} y={y}"
                );
            }
        }
        let moved = |m| {
            let (a, b) = (p.position(m, 0.0), p.position(m, 1.0));
            [b[0] - a[0], b[1] - a[1]]
        };
        assert!(moved(Motion::Left)[0] < -10.0);
        assert!(moved(Motion::Right)[0] > 10.0);
        assert!(moved(Motion::Up)[1] < -10.0);
        assert!(moved(Motion::Down)[1] > 10.0);
        assert_eq!(moved(Motion::Still), [0.0, 0.0]);
        let peak = p.position(Motion::Bounce, 0.25)[1];
        assert!(p.position(Motion::Bounce, 0.0)[1] - peak > 10.0);
    }
}
