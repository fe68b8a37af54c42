"""``canfar-catalogue``: the command line.

``canfar-catalogue detect`` takes source-extractor's own options, so the
tutorial's ``source-extractor 1056213p.fits -CATALOG_NAME 1056213p.cat``
becomes ``canfar-catalogue detect 1056213p.fits.fz -CATALOG_NAME 1056213p.cat``
(no ``funpack`` step).  This module imports neither Prefect nor any cloud
client, so it starts fast.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2
EXIT_SOME_CCDS_SKIPPED = 3

_KEYWORD = re.compile(r"^-[A-Z][A-Z0-9_]*$")

DETECT_EPILOG = """\
source-extractor options:
  Any -KEYWORD value pair overrides the configuration file, exactly as with
  source-extractor, e.g. -CATALOG_NAME 1056213p.cat -DETECT_THRESH 3
  -MAG_ZEROPOINT 30 -PARAMETERS_NAME my.param.  Relative file names in the
  configuration resolve against the current directory.

exit codes:
  0  catalogue written
  1  internal error (please report it)
  2  bad input (file, extension or configuration); no catalogue written
  3  catalogue written, but some CCDs were skipped (see the messages)

example:
  canfar-catalogue detect 1056213p.fits.fz -CATALOG_NAME 1056213p.cat
"""


def _split_keywords(argv: list[str]) -> tuple[list[str], list[str]]:
    """Separate source-extractor ``-KEYWORD value`` pairs from our own options."""
    ours: list[str] = []
    keywords: list[str] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        if _KEYWORD.match(word):
            keywords.append(word)
            if i + 1 < len(argv):
                keywords.append(argv[i + 1])
            i += 2
        else:
            ours.append(word)
            i += 1
    return ours, keywords


def _detect(args: argparse.Namespace, keywords: list[str]) -> int:
    from ..science import ConfigError, ExposureError, load_config, run_exposure
    from ..science.results import CCDResult

    try:
        config = load_config(args.config, keywords, zeropoint_key=args.zeropoint_key, image=args.image)
    except ConfigError as exc:
        print(f"canfar-catalogue: configuration error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for note in config.notes:
        print(f"canfar-catalogue: note: {note}", file=sys.stderr)
    folder = Path(config.catalog_name).parent
    if not folder.is_dir():  # said now, not after measuring every CCD
        print(f"canfar-catalogue: CATALOG_NAME {config.catalog_name}: the directory {folder} does not exist; "
              "create it or name another", file=sys.stderr)
        return EXIT_BAD_INPUT

    def progress(ccd: CCDResult, done: int, total: int) -> None:
        if args.quiet:
            return
        width = len(str(total))
        if ccd.error:
            line = f"[{done:{width}d}/{total}] {ccd.label}: SKIPPED: {ccd.error}"
        else:
            line = f"[{done:{width}d}/{total}] {ccd.label}: {ccd.count} sources in {ccd.seconds:.1f} s"
        print(line, file=sys.stderr, flush=True)

    try:
        result = run_exposure(args.image, config, workers=args.workers, progress=progress)
    except ExposureError as exc:
        print(f"canfar-catalogue: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:
        print(f"canfar-catalogue: cannot write the catalogue: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for ccd in result.failed:
        print(f"canfar-catalogue: {args.image}, {ccd.label}: skipped: {ccd.error}", file=sys.stderr)
    if args.qa:
        try:
            _write_qa(args.qa, result, result.zeropoint(config.mag_zeropoint))
            if not args.quiet:
                print(f"canfar-catalogue: quality figure -> {args.qa}", file=sys.stderr)
        except OSError as exc:
            print(f"canfar-catalogue: cannot write the QA figure {args.qa}: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
    if not args.quiet:
        print(
            f"canfar-catalogue: {result.count} sources from {len(result.ccds) - len(result.failed)} CCDs "
            f"in {result.seconds:.1f} s -> {result.catalogue}",
            file=sys.stderr,
        )
    return EXIT_SOME_CCDS_SKIPPED if result.failed else EXIT_OK


def _write_qa(target: Path, result, zeropoint: float) -> None:
    """The quality figure, written under a temporary name and then moved, like the catalogue."""
    from ..science.qa import assess
    from ..science.qa_figure import exposure_figure, exposure_title

    quality = assess(result, zeropoint)
    png = exposure_figure(quality, result.layout, exposure_title(Path(result.path).name, quality))
    partial = target.with_name(f".{target.name}.part")
    partial.write_bytes(png)
    partial.replace(target)


def _synth(args: argparse.Namespace, _: list[str]) -> int:
    from ..science.synthetic import ExposureSpec, beside, write_exposure, write_flags, write_weights

    spec = ExposureSpec(nccd=args.nccd, shape=(args.height, args.width), seed=args.seed, pixel_type=args.pixels,
                        psf=args.psf)
    truth = write_exposure(args.output, spec)
    print(f"canfar-catalogue: wrote {args.output} ({spec.nccd} CCDs, {len(truth)} sources)", file=sys.stderr)
    if args.weights:
        weights = write_weights(beside(args.output, "weight"), spec)
        print(f"canfar-catalogue: wrote {weights} (its weight map: -WEIGHT_TYPE MAP_WEIGHT -WEIGHT_IMAGE {weights})",
              file=sys.stderr)
    if args.flags:
        flags = write_flags(beside(args.output, "flag"), spec)
        print(f"canfar-catalogue: wrote {flags} (its flag map, for IMAFLAGS_ISO: -FLAG_IMAGE {flags})", file=sys.stderr)
    return EXIT_OK


SUBMIT_EPILOG = """\
The tutorial's own do_catalogue.sub works as it is:

  canfar-catalogue submit do_catalogue.sub catalogue-software-2023-08-21 c2-7.5gb-30 \\
      --destination vos:[VOSpace]/catalogues

It starts the batch deployment (catalogue/batch) with the file's IDs; each
exposure runs as an HTCondor job on a VM of that image and flavour. Follow
it in the Prefect UI. Needs PREFECT_API_URL to point at the server.

exit codes: 0 batch started (or --dry-run), 2 bad submit file or arguments
"""


def _submit(args: argparse.Namespace, _: list[str]) -> int:
    from ..boundaries.errors import BoundaryError
    from .submit import SubmitFileError, read_submit_file

    try:
        imported = read_submit_file(args.submit_file, args.image, args.flavour, args.project)
    except SubmitFileError as exc:
        print(f"canfar-catalogue: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for note in imported.notes:
        print(f"canfar-catalogue: note: {note}", file=sys.stderr)
    parameters = {
        "ids": imported.ids,
        "destination": args.destination,
        "archive": args.archive,
        "job_variables": imported.job_variables,
    }
    print(f"canfar-catalogue: {len(imported.ids)} exposures: {' '.join(imported.ids[:8])}"
          + (" ..." if len(imported.ids) > 8 else ""), file=sys.stderr)
    if args.dry_run:
        import json

        print(json.dumps(parameters, indent=2))
        return EXIT_OK
    from datetime import timedelta

    from .. import config
    from ..boundaries.archive import open_archive
    from ..boundaries.credentials import require_lifetime
    from ..boundaries.storage import open_destination

    # The batch checks this too, but on the server: here the user sees it before anything starts.
    needed = timedelta(hours=float(config.settings()["batch"]["expected_hours"]))
    try:
        require_lifetime([open_archive(args.archive), open_destination(args.destination)], needed)
    except BoundaryError as exc:
        print(f"canfar-catalogue: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    from prefect.deployments import run_deployment

    run = run_deployment(args.deployment, parameters=parameters, timeout=0)
    print(f"canfar-catalogue: started flow run {run.name} ({run.id}) of {args.deployment}", file=sys.stderr)
    print(run.id)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="canfar-catalogue",
        description="Source catalogues from CFHT MegaCam exposures, equivalent to funpack + source-extractor.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    detect = commands.add_parser(
        "detect",
        help="detect and measure sources in an exposure (.fits.fz or .fits)",
        description="Detect and measure the sources of an exposure, like source-extractor, "
        "reading Rice-compressed files directly.",
        epilog=DETECT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    detect.add_argument("image", help="the exposure: a multi-extension .fits.fz or .fits file")
    detect.add_argument(
        "-c",
        dest="config",
        metavar="FILE",
        help="SExtractor configuration file (default: the project's config/default.sex)",
    )
    detect.add_argument(
        "--workers", type=int, default=None, metavar="N", help="processes measuring CCDs (default: one per core)"
    )
    detect.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    detect.add_argument(
        "--zeropoint-key", metavar="KEY",
        help="take each CCD's magnitude zeropoint from this header keyword (MegaPipe's PHOTZP, for one) instead "
        "of MAG_ZEROPOINT; a CCD without it is skipped and named",
    )
    detect.add_argument(
        "--qa", type=Path, metavar="PNG",
        help="also write the exposure's quality figure (focal plane, magnitudes, seeing, background), "
        "the one the Prefect UI shows, e.g. --qa qa.png",
    )
    detect.set_defaults(run=_detect)

    synth = commands.add_parser(
        "synth",
        help="write a synthetic MegaCam-like exposure (for trying things out)",
        description="Write a deterministic synthetic MegaCam-like exposure; Rice-compressed for a .fz name.",
    )
    synth.add_argument("output", help="file to write, e.g. 1056213p.fits.fz")
    synth.add_argument("--nccd", type=int, default=36, help="number of CCD extensions (default 36)")
    synth.add_argument("--width", type=int, default=2048, help="CCD width in pixels (default 2048)")
    synth.add_argument("--height", type=int, default=4612, help="CCD height in pixels (default 4612)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synth.add_argument(
        "--pixels", choices=("uint16", "float32"), default="uint16",
        help="uint16 (lossless Rice) or float32 (quantised Rice, like processed MegaCam files)",
    )
    synth.add_argument(
        "--psf", choices=("round", "varying"), default="round",
        help="round (the same everywhere) or varying (elliptical, changing across each CCD: "
        "for checking PSF models built from a catalogue)",
    )
    synth.add_argument(
        "--weights", action="store_true",
        help="also write its weight map beside it (1056213p.fits.fz -> 1056213p.weight.fits.fz): inverse "
        "variance, with dead columns, a dead square and a low-weight band",
    )
    synth.add_argument(
        "--flags", action="store_true",
        help="also write its flag map beside it (1056213p.flag.fits.fz): 1 on the weight map's dead pixels, "
        "2 on its low-weight band",
    )
    synth.set_defaults(run=_synth)

    submit = commands.add_parser(
        "submit",
        help="run a CANFAR tutorial submit file (do_catalogue.sub) as a catalogue batch",
        description="Read an HTCondor submit file with `queue arguments from (...)` and start the catalogue "
        "batch for its observation IDs, as canfar_submit would submit its jobs.",
        epilog=SUBMIT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    submit.add_argument("submit_file", type=Path, help="the submit file, e.g. do_catalogue.sub")
    submit.add_argument("image", help="VM image (snapshot) the jobs run on, as for canfar_submit")
    submit.add_argument("flavour", help="VM flavour, e.g. c2-7.5gb-30")
    submit.add_argument("--destination", required=True, help="where catalogues go: vos:<space>/<path> or file:///...")
    submit.add_argument("--archive", default="cadc:CFHT", help="where exposures come from (default cadc:CFHT)")
    submit.add_argument(
        "--project", default=os.environ.get("OS_PROJECT_NAME", ""),
        help="OpenStack project owning the image (default: $OS_PROJECT_NAME from your openrc)",
    )
    submit.add_argument("--deployment", default="catalogue/batch", help="deployment to run (default catalogue/batch)")
    submit.add_argument("--dry-run", action="store_true", help="print the batch's parameters, start nothing")
    submit.set_defaults(run=_submit)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ours, keywords = _split_keywords(argv)
    args = build_parser().parse_args(ours)
    if keywords and args.command != "detect":
        build_parser().error(f"source-extractor options such as {keywords[0]} only go with 'detect'")
    try:
        return args.run(args, keywords)
    except KeyboardInterrupt:
        print("canfar-catalogue: interrupted; no catalogue written", file=sys.stderr)
        return 130
    except Exception as exc:  # an internal error: say so plainly
        if os.environ.get("CANFAR_CATALOGUE_DEBUG"):
            raise
        print(
            f"canfar-catalogue: internal error: {type(exc).__name__}: {exc}\n"
            "  (set CANFAR_CATALOGUE_DEBUG=1 for the traceback, and please report it)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
