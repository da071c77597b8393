"""Rebuild NotoSansCJKsc-Regular-subset.otf from Debian's fonts-noto-cjk (see README.md).

Usage: python channels_app/fonts/build_subset.py /path/to/NotoSansCJK-Regular.ttc
Needs fontTools (a build-time tool only; the app itself reads the .otf with Pillow).
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "NotoSansCJKsc-Regular-subset.otf"
SC_FACE = 2  # face index of "Noto Sans CJK SC" inside the Debian/upstream .ttc collection

# GB2312 covers 3,498 of the 3,500 level-1 characters of 通用规范汉字表; these are the other two.
LEVEL1_NOT_IN_GB2312 = "啰瞭"


def subset_text() -> str:
    """Every GB2312 character (6,763 hanzi plus its punctuation, kana, Greek, Cyrillic, box
    drawing), ASCII, Latin-1, general punctuation, CJK symbols and full-width forms."""
    chars = set(LEVEL1_NOT_IN_GB2312)
    for high in range(0xA1, 0xF8):
        for low in range(0xA1, 0xFF):
            try:
                chars.add(bytes([high, low]).decode("gb2312"))
            except UnicodeDecodeError:
                continue
    for start, end in ((0x20, 0x7F), (0xA0, 0x100), (0x2000, 0x2070), (0x3000, 0x3040),
                       (0xFF01, 0xFF5F)):  # fmt: skip
        chars.update(chr(code) for code in range(start, end))
    return "".join(sorted(chars))


def main(source: str) -> None:
    from fontTools import subset

    text_file = HERE / ".subset-chars.txt"
    text_file.write_text(subset_text(), encoding="utf-8")
    try:
        subset.main([
            source, f"--font-number={SC_FACE}", f"--text-file={text_file}",
            f"--output-file={OUTPUT}", "--name-IDs=*", "--no-hinting",
            # Horizontal features only: the default list pulls in vertical and locale alternates
            # (13.7k glyphs, 2.9 MB) that a horizontal poster never uses (7.7k glyphs, 1.6 MB).
            "--layout-features=kern,palt,liga",
        ])  # fmt: skip
    finally:
        text_file.unlink()
    print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main(sys.argv[1])
