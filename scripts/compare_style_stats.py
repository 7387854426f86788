"""Gram vs covariance style statistics: scripts/compare_taps.py --compare stats.

    python scripts/compare_style_stats.py --size 256 --steps 100 --out outputs/compare/stats

Takes the same options as compare_taps.py (see its --help).
"""

from compare_taps import main

if __name__ == "__main__":
    main(default_compare="stats")
