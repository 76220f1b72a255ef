"""The Japanese font every picture uses: IPAexGothic, shipped by the ``matplotlib-fontja`` package.

Pictures never depend on system fonts (a machine without CJK fonts would draw empty boxes).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

from PIL import ImageFont

from toolkit.errors import ToolkitError

FONT_PACKAGE = "matplotlib_fontja"
FONT_FILE = "fonts/ipaexg.ttf"


@lru_cache(maxsize=1)
def japanese_font_path() -> Path:
    """Path of IPAexGothic inside the installed ``matplotlib-fontja`` package."""
    try:
        path = Path(str(resources.files(FONT_PACKAGE).joinpath(FONT_FILE)))
    except ModuleNotFoundError as e:
        raise ToolkitError("the Japanese font package is missing: pip install matplotlib-fontja") from e
    if not path.is_file():
        raise ToolkitError(f"the Japanese font {path} is missing; reinstall matplotlib-fontja")
    return path


@lru_cache(maxsize=32)
def pil_font(size: int) -> ImageFont.FreeTypeFont:
    """IPAexGothic at ``size`` pixels, for drawing with PIL."""
    return ImageFont.truetype(str(japanese_font_path()), size)


def use_japanese_font_in_matplotlib() -> str:
    """Register IPAexGothic with matplotlib and make it the default family; return the family name."""
    from matplotlib import font_manager, rcParams

    path = str(japanese_font_path())
    font_manager.fontManager.addfont(path)
    name = font_manager.FontProperties(fname=path).get_name()
    rcParams["font.family"] = name
    rcParams["axes.unicode_minus"] = False
    return name


def subset_font_face(text: str, family: str = "IPAexGothic") -> str:
    """A CSS ``@font-face`` with IPAexGothic cut down to the characters of ``text`` (inline WOFF), so an
    HTML page shows its Japanese text without any font installed."""
    import base64
    import io

    from fontTools import subset

    options = subset.Options()
    options.flavor = "woff"
    options.layout_features = ["*"]
    font = subset.load_font(str(japanese_font_path()), options)
    subsetter = subset.Subsetter(options)
    subsetter.populate(text="".join(sorted(set(text) | set(" 0123456789"))))
    subsetter.subset(font)
    buf = io.BytesIO()
    subset.save_font(font, buf, options)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f"@font-face{{font-family:'{family}';src:url(data:font/woff;base64,{data}) format('woff')}}"
