"""How well a model retargets: generated frames against the exact ground truth of synthetic people.

:func:`magicpose_cli.synthetic.sample_pair` gives a reference person A, the motion of another
person B on A's proportions, and the frames of A really performing it. A model is driven with
those poses and compared frame by frame (PSNR, SSIM, L1), on the person alone (PSNR over the pixels
where the ground truth differs from that person's empty background: a flat wall copied from the
reference scores well on the whole frame without drawing anyone), and for temporal stability by
how much more its frames change from one to the next than the ground truth's do (flicker) and how far
its frame-to-frame changes are from the ground truth's (temporal error); and inside the face box
(PSNR, SSIM and temporal error), which the synthetic people's exact face landmarks give.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Callable

import numpy as np
import torch

# The metrics live in magicpose_cli.metrics (one implementation for these tables and `magicpose
# evaluate`); they are importable from here too.
from magicpose_cli.metrics import images
from magicpose_cli.metrics.face_region import FaceBox, face_boxes, score_face_region
from magicpose_cli.metrics.images import l1, psnr, to_unit  # noqa: F401
from magicpose_cli.metrics.temporal import flicker, flicker_excess, temporal_error, temporal_psnr  # noqa: F401
from magicpose_cli.pose.render import render_pose
from magicpose_cli.synthetic import SyntheticPair, draw_background, sample_pair
from magicpose_cli.synthetic.closeups import closeup_pair

EVALUATION_SEEDS = tuple(range(9000, 9008))  # held-out pairs: sample_pair people never appear in write_dataset data


def ssim(generated, target) -> float:
    """SSIM of two HxWx3 images with the colour channels averaged, as the demo tables score (the
    paper's grey SSIM is ``magicpose_cli.metrics.images.ssim``)."""
    return images.ssim(generated, target, grayscale=False)


def person_psnr(generated, target, person) -> float:
    """PSNR over the pixels where ``person`` (HxW bool) is set: how well the person alone is drawn."""
    person = np.asarray(person, dtype=bool)
    if not person.any():
        raise ValueError("the person mask is empty")
    return psnr(to_unit(generated)[person], to_unit(target)[person])


def person_masks(pair: SyntheticPair) -> np.ndarray:
    """N x H x W: where each ground-truth frame differs from the reference person's empty background."""
    frames = np.stack(pair.target_frames)
    background = draw_background(pair.reference_identity, frames.shape[2], frames.shape[1])
    return np.any(frames != background, axis=-1)


@dataclass
class VideoScores:
    psnr: float
    ssim: float
    l1: float
    person_psnr: float  # PSNR on the person's pixels only (nan when no mask was given)
    flicker_excess: float  # generated flicker minus ground-truth flicker
    temporal_error: float  # mean |generated - ground-truth| of consecutive-frame differences
    # The same inside the face box (nan when no boxes were given, or no frame has one).
    face_psnr: float = float("nan")
    face_ssim: float = float("nan")
    face_temporal_error: float = float("nan")

    def as_dict(self) -> dict:
        return asdict(self)


def pair_face_boxes(pair: SyntheticPair) -> list[FaceBox | None]:
    """The face box of each ground-truth frame, from the exact face landmarks of the person drawn."""
    return face_boxes([pose.people[0].face for pose in pair.target_poses])


def score_video(generated, target, person=None, faces: list[FaceBox | None] | None = None) -> VideoScores:
    """Frame-averaged PSNR, SSIM (colour channels averaged: the synthetic people differ in colour,
    which grey SSIM misses) and L1 of ``generated`` against ``target`` (both N x H x W x 3), PSNR on
    the ``person`` masks (N x H x W) when given, the excess flicker and the temporal error; the
    PSNR, SSIM and temporal error inside the ``faces`` boxes when given."""
    generated, target = to_unit(generated), to_unit(target)
    if generated.shape != target.shape:
        raise ValueError(f"generated frames are {generated.shape} but the ground truth is {target.shape}")
    face = {}
    if faces is not None:
        region = score_face_region(generated, target, faces, {"face_psnr": psnr, "face_ssim": ssim})
        face = {name: float(np.mean(values)) for name, values in region.frames.items() if values}
        if region.temporal_errors:
            face["face_temporal_error"] = float(np.mean(region.temporal_errors))
    return VideoScores(
        psnr=float(np.mean([psnr(g, t) for g, t in zip(generated, target)])),
        ssim=float(np.mean([ssim(g, t) for g, t in zip(generated, target)])),
        l1=float(np.mean([l1(g, t) for g, t in zip(generated, target)])),
        person_psnr=float("nan") if person is None else float(np.mean([person_psnr(*frame) for frame in zip(generated, target, person)])),
        flicker_excess=flicker_excess(generated, target),
        temporal_error=temporal_error(generated, target),
        **face,
    )


@dataclass
class ScoreSummary:
    """Mean and standard deviation of each score over the videos scored (pairs x noise seeds), and the scores."""

    mean: VideoScores
    spread: VideoScores
    scores: list[VideoScores]  # one per video, in a fixed order (noise seed, then pair): two runs pair up

    @classmethod
    def of(cls, scores: list[VideoScores]) -> "ScoreSummary":
        fields = VideoScores.__dataclass_fields__
        values = {key: np.array([getattr(score, key) for score in scores], dtype=np.float64) for key in fields}
        return cls(
            mean=VideoScores(**{key: float(value.mean()) for key, value in values.items()}),
            spread=VideoScores(**{key: float(value.std()) for key, value in values.items()}),
            scores=list(scores),
        )

    @property
    def videos(self) -> int:
        return len(self.scores)

    def as_dict(self) -> dict:
        return {"mean": self.mean.as_dict(), "spread": self.spread.as_dict(), "videos": self.videos}


@dataclass(frozen=True)
class PairedDifference:
    """One variant against another on the same videos: the spread over pairs and seeds is mostly the pairs'
    difficulty, which both share, so a small mean difference can still hold on nearly every video."""

    mean: float  # mean of (ours - theirs) per video
    spread: float  # its standard deviation
    wins: int  # videos where ours scores higher
    videos: int


def paired_difference(ours: ScoreSummary, theirs: ScoreSummary, score: str) -> PairedDifference:
    """``score`` (a :class:`VideoScores` field) of ``ours`` minus ``theirs``, video by video."""
    if ours.videos != theirs.videos:
        raise ValueError(f"cannot pair {ours.videos} videos with {theirs.videos}")
    differences = np.array([getattr(a, score) - getattr(b, score) for a, b in zip(ours.scores, theirs.scores)])
    return PairedDifference(float(differences.mean()), float(differences.std()), int((differences > 0).sum()), len(differences))


@dataclass(frozen=True)
class EvaluationSettings:
    size: int = 64
    num_frames: int = 8
    steps: int = 25
    guidance: float = 3.0
    seed: int = 0


def generate_for_pair(pipeline, pair, settings: EvaluationSettings, use_reference: bool = True, **sampling) -> np.ndarray:
    """The model's frames (N x H x W x 3 in [0, 1]) for a synthetic pair's reference and target poses;
    ``sampling`` goes to the pipeline (``noise``, ``context_frames``, ``motion_scale``, ...)."""
    output = pipeline(
        reference_image=pair.reference_frame,
        pose_maps=[render_pose(pose, settings.size, settings.size) for pose in pair.target_poses],
        num_inference_steps=settings.steps,
        guidance_scale=settings.guidance,
        generator=torch.Generator().manual_seed(settings.seed),
        **sampling,
        frames_per_batch=settings.num_frames,
        output_type="np",
        use_reference=use_reference,
    )
    return np.asarray(output.images)


def generate_with_face_pass(pipeline, pair: SyntheticPair, large: SyntheticPair, settings: EvaluationSettings, strength: float,
                            margin: float = 0.5) -> np.ndarray:  # fmt: skip
    """The model's frames for ``pair`` with retarget's face pass after them (its face boxes, crops, pose maps and
    blending: :mod:`magicpose_cli.retarget.face_pass`), the reference's face cut from ``large``, the same pair
    drawn larger, as a photo's full resolution gives it; N x H x W x 3 in [0, 1]."""
    from magicpose_cli.images import to_uint8
    from magicpose_cli.retarget.face_boxes import blend_face, cut_square, pose_in_square
    from magicpose_cli.retarget.face_pass import FaceSettings, plan_face_pass

    main = to_uint8(generate_for_pair(pipeline, pair, settings))
    plan = plan_face_pass(FaceSettings(strength, settings.size, margin), pair.target_poses, large.reference_frame, large.reference_pose, "pair")
    if plan is None:
        return main / 255.0
    boxes = [plan.boxes.box(index) for index in range(len(main))]
    face_pair = replace(pair, reference_frame=plan.reference_face,
                        target_poses=[pose_in_square(pose, *box, settings.size) for pose, box in zip(pair.target_poses, boxes)])  # fmt: skip
    crops = [cut_square(frame, *box, settings.size) for frame, box in zip(main, boxes)]
    redrawn = to_uint8(generate_for_pair(pipeline, face_pair, settings, image=crops, strength=strength))
    frames = [blend_face(frame, face, *box) if found else frame for frame, face, box, found in zip(main, redrawn, boxes, plan.boxes.found)]
    return np.stack(frames) / 255.0


def vae_round_trip(pipeline, frames: np.ndarray) -> np.ndarray:
    """``frames`` (N x H x W x 3 uint8) encoded and decoded by the model's VAE: the best any generation can score."""
    return vae_reconstruction(pipeline.vae, frames)


def vae_reconstruction(vae, frames: np.ndarray, batch_size: int = 8) -> np.ndarray:
    """``frames`` (N x H x W x 3 uint8) through ``vae`` and back (the posterior's mean), N x H x W x 3 in [0, 1],
    a few at a time on the VAE's device."""
    decoded_batches = []
    for start in range(0, len(frames), batch_size):
        batch = torch.from_numpy(np.array(frames[start : start + batch_size])).permute(0, 3, 1, 2)
        images = batch.to(vae.device, vae.dtype) / 127.5 - 1.0
        with torch.no_grad():
            decoded = vae.decode(vae.encode(images).latent_dist.mode()).sample
        decoded_batches.append(((decoded.float().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).cpu().numpy())
    return np.concatenate(decoded_batches)


def score_pairs(make_frames: Callable[[SyntheticPair], np.ndarray], seeds, settings: EvaluationSettings) -> list[VideoScores]:
    """The scores of the frames ``make_frames(pair)`` returns, one per held-out pair."""
    scores = []
    for seed in seeds:
        pair = sample_pair(seed, settings.size, settings.num_frames)
        scores.append(score_video(make_frames(pair), np.stack(pair.target_frames), person_masks(pair), pair_face_boxes(pair)))
    return scores


def evaluate_frames(make_frames: Callable[[SyntheticPair], np.ndarray], seeds, settings: EvaluationSettings) -> ScoreSummary:
    """Scores over the held-out pairs of the frames ``make_frames(pair)`` returns."""
    return ScoreSummary.of(score_pairs(make_frames, seeds, settings))


def evaluate(
    pipeline, seeds=EVALUATION_SEEDS, settings: EvaluationSettings = EvaluationSettings(), noise_seeds=(0,), **variant
) -> ScoreSummary:
    """Scores of ``pipeline`` over the held-out pairs and initial-noise seeds; ``variant`` goes to :func:`generate_for_pair`.

    With shared noise all frames of a pair come from one draw, so several noise seeds are needed
    for a mean that does not hinge on a lucky draw.
    """
    return ScoreSummary.of([
        score
        for noise_seed in noise_seeds
        for score in score_pairs(
            lambda pair: generate_for_pair(pipeline, pair, replace(settings, seed=noise_seed), **variant), seeds, settings
        )
    ])  # fmt: skip


def evaluate_closeups(pipeline, seeds=EVALUATION_SEEDS, settings: EvaluationSettings = EvaluationSettings(), noise_seeds=(0,)) -> ScoreSummary:
    """Can the model draw a face? The held-out pairs as close-ups (:func:`closeup_pair`: the reference's
    face crop as the reference, the face landmarks of the ground truth's crops as the poses), generated
    from noise at the model's canvas and scored on the whole crop (the face fields stay nan)."""
    return ScoreSummary.of([
        score_video(generate_for_pair(pipeline, pair, replace(settings, seed=noise_seed)), np.stack(pair.target_frames))
        for noise_seed in noise_seeds
        for pair in (closeup_pair(seed, settings.size, settings.num_frames) for seed in seeds)
    ])  # fmt: skip


def evaluate_face_pass(pipeline, seeds=EVALUATION_SEEDS, settings: EvaluationSettings = EvaluationSettings(), noise_seeds=(0,),
                       strength: float = 0.5, zoom: int = 5) -> ScoreSummary:  # fmt: skip
    """:func:`evaluate` with the face pass at ``strength``, the reference's face cut from it drawn ``zoom`` times larger."""
    scores = []
    for noise_seed in noise_seeds:
        for seed in seeds:
            pair, large = sample_pair(seed, settings.size, settings.num_frames), sample_pair(seed, settings.size * zoom, settings.num_frames)
            frames = generate_with_face_pass(pipeline, pair, large, replace(settings, seed=noise_seed), strength)
            scores.append(score_video(frames, np.stack(pair.target_frames), person_masks(pair), pair_face_boxes(pair)))
    return ScoreSummary.of(scores)


def markdown_table(results: dict[str, ScoreSummary]) -> str:
    """The scores as a Markdown table, one row per model variant: mean ± standard deviation over the videos."""
    lines = [
        "| variant | PSNR (dB) ↑ | person PSNR (dB) ↑ | SSIM ↑ | face PSNR (dB) ↑ | face SSIM ↑ | L1 ↓ | flicker excess ↓ | temporal error ↓ | face temporal error ↓ |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, summary in results.items():
        mean, spread = summary.mean, summary.spread
        lines.append(
            f"| {name} | {mean.psnr:.2f} ± {spread.psnr:.2f} | {mean.person_psnr:.2f} ± {spread.person_psnr:.2f} "
            f"| {mean.ssim:.3f} ± {spread.ssim:.3f} | {mean.face_psnr:.2f} ± {spread.face_psnr:.2f} | {mean.face_ssim:.3f} ± {spread.face_ssim:.3f} "
            f"| {mean.l1:.4f} | {mean.flicker_excess:+.4f} | {mean.temporal_error:.4f} | {mean.face_temporal_error:.4f} |"
        )
    return "\n".join(lines)


def paired_markdown_table(results: dict[str, ScoreSummary], model: str) -> str:
    """``model`` against every other row of ``results``, video by video (all rows must score the same videos)."""
    lines = [
        f"| {model} against | PSNR difference (dB) | person PSNR difference (dB) | face PSNR difference (dB) | videos where {model} draws the person better |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, summary in results.items():
        if name == model:
            continue
        whole, person, face = (paired_difference(results[model], summary, score) for score in ("psnr", "person_psnr", "face_psnr"))
        lines.append(
            f"| {name} | {whole.mean:+.2f} ± {whole.spread:.2f} | {person.mean:+.2f} ± {person.spread:.2f} "
            f"| {face.mean:+.2f} ± {face.spread:.2f} | {person.wins} of {person.videos} |"
        )
    return "\n".join(lines)
