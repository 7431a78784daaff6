"""What a synthetic person looks like: colours, clothing, scene and body proportions, drawn at random."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

RGB = tuple[int, int, int]

HAIR_STYLES = ("short", "long", "bun", "curly")
SHIRT_PATTERNS = ("solid", "stripes", "two_tone")
SLEEVES = ("short", "long")
LEGWEAR = ("trousers", "shorts")

_SKIN_TONES = np.array(
    [(255, 224, 196), (241, 194, 155), (224, 172, 130), (198, 134, 90), (160, 100, 62), (110, 68, 42), (80, 50, 32)],
    dtype=np.float64,
)
_HAIR_COLOURS = (
    (25, 20, 18), (60, 38, 24), (110, 70, 35), (200, 160, 90), (170, 70, 30), (150, 150, 150),
    (40, 60, 160), (200, 60, 140),
)  # fmt: skip



@dataclass
class Identity:
    """What a person looks like: colours and clothing, the scene, and body proportions.

    Lengths are fractions of the person's standing height (ankle to crown); ``stature`` is that
    height as a fraction of the picture height and ``ground`` the floor line (fraction of height).
    """

    skin: RGB
    hair: RGB
    hair_style: str
    shirt: RGB
    shirt_second: RGB
    shirt_pattern: str
    stripe_period: float
    sleeves: str
    trousers: RGB
    legwear: str
    shoes: RGB
    background_top: RGB
    background_bottom: RGB
    floor: RGB
    ground: float
    stature: float
    head_radius: float
    neck_length: float
    torso_length: float
    shoulder_half_width: float
    hip_half_width: float
    upper_arm: float
    forearm: float
    thigh: float
    shin: float
    hand_length: float
    arm_radius: float
    leg_radius: float

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "Identity":
        return cls(**{key: tuple(value) if isinstance(value, list) else value for key, value in data.items()})


def _colour(rng: np.random.Generator) -> RGB:
    return tuple(int(value) for value in rng.integers(0, 256, size=3))


def _colour_distance(colour: RGB, others: list[RGB]) -> float:
    return min((float(np.linalg.norm(np.subtract(colour, other))) for other in others), default=1e9)


def _blend(first: RGB, second: RGB, steps: int = 5) -> list[RGB]:
    """Colours along the straight line from ``first`` to ``second`` (a gradient's shades)."""
    return [tuple(int(round(a + (b - a) * t)) for a, b in zip(first, second)) for t in np.linspace(0, 1, steps)]


def _distinct_colour(rng: np.random.Generator, avoid: list[RGB], min_distance: float = 110.0) -> RGB:
    """A colour far (in RGB) from every colour in ``avoid``, so parts stay legible against each other."""
    best, best_distance = None, -1.0
    for _ in range(64):
        candidate = _colour(rng)
        distance = _colour_distance(candidate, avoid)
        if distance >= min_distance:
            return candidate
        if distance > best_distance:
            best, best_distance = candidate, distance
    return best


def _sample_palette(rng: np.random.Generator) -> dict[str, RGB]:
    """Skin, hair, scene and clothing colours, each far enough from its neighbours to stay legible."""
    skin_position = rng.uniform(0, len(_SKIN_TONES) - 1)
    low = int(skin_position)
    high = min(low + 1, len(_SKIN_TONES) - 1)
    blend = skin_position - low
    skin = tuple(int(v) for v in np.round((1 - blend) * _SKIN_TONES[low] + blend * _SKIN_TONES[high]))
    hair = _HAIR_COLOURS[int(rng.integers(len(_HAIR_COLOURS)))]
    background_top = _distinct_colour(rng, [skin, hair], 100.0)
    # Every colour of the wall's gradient, not just its ends, must stand apart from the skin.
    background_bottom = background_top
    for _ in range(64):
        candidate = _distinct_colour(rng, [skin, hair], 100.0)
        if min(_colour_distance(colour, [skin, hair]) for colour in _blend(background_top, candidate)) >= 80.0:
            background_bottom = candidate
            break
    floor = _distinct_colour(rng, [background_bottom], 70.0)
    scene = [*_blend(background_top, background_bottom), floor, skin]
    shirt = _distinct_colour(rng, scene)
    shirt_second = _distinct_colour(rng, [shirt, skin], 120.0)
    trousers = _distinct_colour(rng, [*scene, shirt, shirt_second])
    shoes = _distinct_colour(rng, [trousers, floor, skin], 90.0)
    return dict(
        skin=skin, hair=hair, shirt=shirt, shirt_second=shirt_second, trousers=trousers, shoes=shoes,
        background_top=background_top, background_bottom=background_bottom, floor=floor,
    )  # fmt: skip


def sample_identity(rng: np.random.Generator) -> Identity:
    """A random person: skin, hair, clothes, background and proportions, all from ``rng``."""
    palette = _sample_palette(rng)
    # Relative sizes (cartoon-like big head, so faces stay legible at 64-128 px), normalised so
    # that thigh + shin + torso + neck + head diameter is exactly one standing height.
    head_radius = rng.uniform(0.085, 0.105)
    neck_length = rng.uniform(0.035, 0.055)
    torso_length = rng.uniform(0.27, 0.32)
    thigh = rng.uniform(0.19, 0.23)
    shin = rng.uniform(0.18, 0.22)
    total = thigh + shin + torso_length + neck_length + 2 * head_radius
    build = rng.uniform(0.85, 1.2)
    return Identity(
        **palette,
        hair_style=str(rng.choice(HAIR_STYLES)),
        shirt_pattern=str(rng.choice(SHIRT_PATTERNS)),
        stripe_period=float(rng.uniform(0.2, 0.35)),
        sleeves=str(rng.choice(SLEEVES)),
        legwear=str(rng.choice(LEGWEAR, p=[0.7, 0.3])),
        ground=float(rng.uniform(0.9, 0.95)),
        stature=float(rng.uniform(0.72, 0.82)),
        head_radius=float(head_radius / total),
        neck_length=float(neck_length / total),
        torso_length=float(torso_length / total),
        shoulder_half_width=float(rng.uniform(0.085, 0.115) * build),
        hip_half_width=float(rng.uniform(0.05, 0.07) * build),
        upper_arm=float(rng.uniform(0.14, 0.17)),
        forearm=float(rng.uniform(0.12, 0.15)),
        thigh=float(thigh / total),
        shin=float(shin / total),
        hand_length=float(rng.uniform(0.065, 0.08)),
        arm_radius=float(rng.uniform(0.026, 0.034) * build),
        leg_radius=float(rng.uniform(0.036, 0.046) * build),
    )


def sleeve_colour(identity: Identity, side: str) -> RGB:
    """The colour of the ``side`` ("right"/"left") sleeve: a two-tone shirt's halves continue into them."""
    return identity.shirt_second if identity.shirt_pattern == "two_tone" and side == "left" else identity.shirt
