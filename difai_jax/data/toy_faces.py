"""Procedural toy faces: an embedded, file-free image source for demos, tests and fresh machines.

Not a paper component. DiFAI (Yoon et al.) trains on CelebA-HQ; this source stands in for it
where no data is at hand. Each face is drawn from its own generator
`np.random.default_rng([seed, index])`, so any index renders the same picture independently of
the order or process it is asked in. Varied per face: background, head shape, pose (roll and
a small yaw offset of the features), skin tone, hair colour and style (bald, short, side part,
bangs, long, bun, curly), ears, eyes (size, spacing, openness, gaze, iris colour), brows,
nose, mouth (neutral, smile, open smile with teeth, lipstick), blush, stubble / beard /
moustache, glasses or sunglasses, earrings and clothing. Hole completions of one face can thus
differ meaningfully (beard or not, smile or not, glasses or not, ...).

Faces are drawn with Pillow on a supersampled canvas (2x-8x) and reduced with a Lanczos filter,
which is the anti-aliasing; soft shading is a numpy multiply. Output: uint8 RGB (size, size, 3)
for any size from 32 to 256.

Each face's categorical attributes (`ATTRIBUTES`: hair style and colour, skin tone, beard,
moustache, glasses, mouth, lipstick, earrings) are read off the same draws that render it
(`face_attributes`, `render_face_with_attributes`); recording them changes no pixel. They train
the toy-face recognizer behind the toy-domain measures (`difai_jax/evaluation/metrics/toy.py`).
"""

from __future__ import annotations

import math
import threading

import numpy as np
from PIL import Image, ImageChops, ImageDraw

MIN_SIZE = 32
MAX_SIZE = 256

_SKIN_RAMP = np.array([[250, 220, 196], [236, 192, 160], [220, 170, 132], [196, 140, 100],
                       [160, 106, 72], [118, 76, 50], [84, 56, 40]], np.float64)
_HAIR = np.array([[22, 18, 16], [52, 36, 26], [92, 62, 40], [140, 98, 60], [200, 160, 96],
                  [226, 196, 140], [150, 64, 32], [120, 120, 124], [212, 212, 212]], np.float64)
_HAIR_P = np.array([0.22, 0.2, 0.16, 0.1, 0.08, 0.05, 0.07, 0.07, 0.05])
_IRIS = np.array([[70, 44, 26], [110, 72, 40], [60, 100, 150], [80, 120, 90], [130, 110, 60],
                  [40, 30, 28], [100, 130, 160]], np.float64)
_HAIR_STYLES = ("bald", "short", "side_part", "bangs", "long", "bun", "curly")
_HAIR_STYLE_P = np.array([0.05, 0.22, 0.16, 0.14, 0.25, 0.08, 0.10])


def _canvas_size(size: int) -> int:
  return int(min(512, max(256, 4 * size)))


def _rgb(c, alpha=255):
  c = np.clip(np.round(c), 0, 255).astype(int)
  return (int(c[0]), int(c[1]), int(c[2]), int(alpha))


def _mix(a, b, t):
  return np.asarray(a, np.float64) * (1 - t) + np.asarray(b, np.float64) * t


def _skin_tone(rng):
  """(RGB tone, position t in 0..6 along the light-to-dark ramp)."""
  t = rng.beta(1.3, 1.6) * (len(_SKIN_RAMP) - 1)
  i = min(int(t), len(_SKIN_RAMP) - 2)
  tone = _mix(_SKIN_RAMP[i], _SKIN_RAMP[i + 1], t - i)
  return tone + rng.normal(0, 6, 3) + np.array([rng.normal(0, 4), 0, 0]), float(t)


class _Face:
  """Face parameters drawn from one generator, and the drawing of them on an RGBA layer."""

  def __init__(self, rng: np.random.Generator, canvas: int):
    self.rng = rng
    self.c = canvas
    # The figure is drawn on a larger layer so that rolling it leaves no gaps at the borders.
    self.m = int(round(0.15 * canvas))
    self.layer_size = canvas + 2 * self.m
    r = rng
    # Geometry, in canvas units (0..1); faces fill the frame as in aligned CelebA-HQ crops.
    self.cx = 0.5 + r.normal(0, 0.015)
    self.cy = 0.5 + r.normal(0, 0.015)
    self.a = r.uniform(0.22, 0.285)                  # head half-width
    self.b = self.a * r.uniform(1.22, 1.45)          # head half-height
    self.jaw = r.uniform(0.0, 1.0)                   # 0 = round chin, 1 = square jaw
    self.yaw = r.normal(0, 0.025)                    # feature shift along x
    self.roll = float(np.clip(r.normal(0, 5.0), -14, 14))  # degrees
    self.skin, self.skin_t = _skin_tone(r)
    hair_i = r.choice(len(_HAIR), p=_HAIR_P)
    self.hair_index = int(hair_i)
    self.hair = _HAIR[hair_i] * r.uniform(0.85, 1.15) + r.normal(0, 5, 3)
    self.hair_style = _HAIR_STYLES[r.choice(len(_HAIR_STYLES), p=_HAIR_STYLE_P)]
    self.masculine = r.uniform() < 0.5
    self.brow_color = _mix(self.hair, [20, 15, 12], 0.35 if hair_i < 6 else 0.6)
    self.bg = (r.uniform(20, 235, 3), r.uniform(20, 235, 3))
    self.clothes = r.uniform(10, 240, 3)
    self.light = r.normal(0, 1, 2) * np.array([0.6, 0.4]) + np.array([0, -0.3])
    # What the drawing methods decide, recorded for `face_attributes` (no draws of their own).
    self.earrings = [False, False]
    self.beard = "none"
    self.moustache = False
    self.smile = 0.0
    self.mouth_open = 0.0
    self.lipstick = False
    self.locks = False
    self.glasses = "none"

  # -- coordinates -----------------------------------------------------------------------------
  def p(self, x, y):
    """Canvas units -> layer pixels."""
    return (x * self.c + self.m, y * self.c + self.m)

  def s(self, v):
    return v * self.c

  def poly(self, pts):
    return [self.p(x, y) for x, y in pts]

  def box(self, x, y, rx, ry):
    x0, y0 = self.p(x - rx, y - ry)
    x1, y1 = self.p(x + rx, y + ry)
    return [x0, y0, x1, y1]

  def head_outline(self, n=64, grow=0.0):
    """Head outline: an ellipse whose lower half is squared towards the jaw."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    x = np.cos(t)
    y = np.sin(t)
    lower = y > 0
    # Squarer jaw: push the lower half towards a superellipse.
    k = 2.0 + 1.5 * self.jaw
    xs = np.sign(x) * np.abs(x) ** (2 / k)
    x = np.where(lower, _mix(x, xs, 0.8), x)
    # Narrow the chin a little.
    x = np.where(lower, x * (1 - 0.18 * y ** 2), x)
    return list(zip(self.cx + (self.a + grow) * x, self.cy + (self.b + grow) * y))

  # -- drawing ---------------------------------------------------------------------------------
  def draw(self, canvas_img: Image.Image) -> Image.Image:
    """Draws the figure on an RGB layer-sized image (Pillow blends RGBA fills on RGB only)."""
    img = canvas_img
    d = ImageDraw.Draw(img, "RGBA")
    # Silhouette of head and hair: where the volume shading applies.
    self.sil = Image.new("L", img.size, 0)
    self.sd = ImageDraw.Draw(self.sil)
    self._body(d)
    self._hair_back(d)
    self._ears(d)
    head = self.poly(self.head_outline())
    d.polygon(head, fill=_rgb(self.skin))
    self.sd.polygon(head, fill=255)
    img = self._shade(img)
    d = ImageDraw.Draw(img, "RGBA")
    self._cheeks(d)
    self._beard(d)
    self._nose(d)
    self._mouth(d)
    self._eyes(img)
    d = ImageDraw.Draw(img, "RGBA")
    self._brows(d)
    self._hair_front(d)
    self._glasses(d)
    return img

  def _body(self, d):
    r = self.rng
    neck_w = self.a * r.uniform(0.5, 0.68)
    top = self.cy + 0.5 * self.b
    neck = _mix(self.skin, [0, 0, 0], 0.18)
    d.rectangle(self.box(self.cx, top + 0.25, neck_w, 0.25), fill=_rgb(neck))
    shoulder_y = self.cy + self.b + r.uniform(0.08, 0.16)
    d.ellipse(self.box(self.cx, shoulder_y + 0.3, r.uniform(0.42, 0.55), 0.34),
              fill=_rgb(self.clothes))
    style = r.integers(3)
    if style == 0:  # V-neck shows skin
      d.polygon(self.poly([(self.cx - neck_w * 1.2, shoulder_y - 0.03),
                           (self.cx + neck_w * 1.2, shoulder_y - 0.03),
                           (self.cx, shoulder_y + r.uniform(0.06, 0.14))]), fill=_rgb(neck))
    elif style == 1:  # collar
      col = _mix(self.clothes, [255, 255, 255], r.uniform(0.3, 0.9))
      for sgn in (-1, 1):
        d.polygon(self.poly([(self.cx, shoulder_y + 0.05),
                             (self.cx + sgn * neck_w * 1.5, shoulder_y - 0.05),
                             (self.cx + sgn * neck_w * 1.8, shoulder_y + 0.06)]),
                  fill=_rgb(col))

  def _hair_back(self, d):
    st = self.hair_style
    hair = _rgb(self.hair)
    if st in ("long", "curly"):
      length = self.rng.uniform(0.25, 0.6)
      w = self.a * self.rng.uniform(1.15, 1.35)
      bx = self.box(self.cx, self.cy + length / 2, w, self.b * 0.6 + length / 2)
      d.rounded_rectangle(bx, radius=self.s(0.12), fill=hair)
      self.sd.rounded_rectangle(bx, radius=self.s(0.12), fill=255)
    if st == "bun":
      bx = self.box(self.cx + self.rng.normal(0, 0.03), self.cy - self.b * 1.05,
                    self.a * 0.45, self.a * 0.4)
      d.ellipse(bx, fill=hair)
      self.sd.ellipse(bx, fill=255)
    if st == "curly":
      for t in np.linspace(np.pi * 0.9, np.pi * 2.1, 16):
        rr = self.a * self.rng.uniform(0.22, 0.32)
        x = self.cx + (self.a * 1.08) * math.cos(t)
        y = self.cy - 0.05 + (self.b * 1.02) * math.sin(t)
        d.ellipse(self.box(x, y, rr, rr), fill=hair)
        self.sd.ellipse(self.box(x, y, rr, rr), fill=255)
    if st != "bald":
      bx = self.box(self.cx, self.cy - self.b * 0.12, self.a * 1.1, self.b * 0.98)
      d.ellipse(bx, fill=hair)
      self.sd.ellipse(bx, fill=255)

  def _ears(self, d):
    ey = self.cy - 0.02 * self.b
    ear = _mix(self.skin, [120, 40, 30], 0.1)
    for sgn in (-1, 1):
      x = self.cx + sgn * self.a * 0.97
      d.ellipse(self.box(x, ey, self.a * 0.14, self.b * 0.16), fill=_rgb(ear))
      if self.rng.uniform() < 0.18 and not self.masculine:
        self.earrings[(sgn + 1) // 2] = True
        col = [230, 200, 80] if self.rng.uniform() < 0.6 else [220, 220, 230]
        d.ellipse(self.box(x, ey + self.b * 0.17, 0.012, 0.012), fill=_rgb(col))

  def _shade(self, img: Image.Image) -> Image.Image:
    """Volume: darken head and hair towards the outline and along the light direction.

    The shading field is smooth, so it is computed on a 64x64 grid and upsampled; it applies only
    inside the head/hair silhouette.
    """
    n = 64
    coords = ((np.arange(n, dtype=np.float32) + 0.5) * (self.layer_size / n) - self.m) / self.c
    u = ((coords - self.cx) / self.a)[None, :]
    v = ((coords - self.cy) / self.b)[:, None]
    r2 = np.minimum(u * u + v * v, 1.6)
    shade = 1.0 - 0.22 * r2 * r2 + 0.08 * (self.light[0] * u + self.light[1] * v)
    shade = np.clip(shade, 0.55, 1.0)
    field = Image.fromarray(np.round(shade * 255).astype(np.uint8), "L").resize(
        img.size, Image.BILINEAR).convert("RGB")
    return Image.composite(ImageChops.multiply(img, field), img, self.sil)

  def _feat_x(self, dx):
    return self.cx + self.yaw + dx

  def _cheeks(self, d):
    if self.rng.uniform() < 0.5:
      alpha = int(self.rng.uniform(15, 45))
      for sgn in (-1, 1):
        d.ellipse(self.box(self._feat_x(sgn * self.a * 0.55), self.cy + 0.22 * self.b,
                           self.a * 0.2, self.b * 0.11), fill=_rgb([220, 80, 80], alpha))

  def _beard(self, d):
    r = self.rng
    self.has_moustache = False
    if not self.masculine or self.hair_style == "bald" and r.uniform() < 0.3:
      return
    kind = r.choice(["none", "stubble", "beard", "goatee"], p=[0.45, 0.2, 0.25, 0.1])
    self.beard = str(kind)
    color = _mix(self.hair, [30, 25, 20], 0.2)
    if kind == "stubble":
      alpha, top = int(r.uniform(40, 80)), 0.3
    elif kind == "beard":
      alpha, top = int(r.uniform(190, 240)), r.uniform(0.15, 0.35)
    elif kind == "goatee":
      mx = self._feat_x(0)
      d.ellipse(self.box(mx, self.cy + 0.86 * self.b, self.a * 0.25, self.b * 0.16),
                fill=_rgb(color, 220))
      self.has_moustache = True
      return
    else:
      self.has_moustache = r.uniform() < 0.15
      return
    outline = self.head_outline(n=96)
    lower = [(x, y) for x, y in outline if y > self.cy + top * self.b]
    lower.sort(key=lambda q: -q[0])  # right -> left along the jaw
    mx = self._feat_x(0)
    my = self.cy + 0.5 * self.b
    inner = [(mx - self.a * 0.62, self.cy + top * self.b),
             (mx - self.a * 0.35, my - 0.09 * self.b),
             (mx, my - 0.1 * self.b),
             (mx + self.a * 0.35, my - 0.09 * self.b),
             (mx + self.a * 0.62, self.cy + top * self.b)]
    d.polygon(self.poly(lower + inner), fill=_rgb(color, alpha))
    self.has_moustache = True

  def _nose(self, d):
    r = self.rng
    nx = self._feat_x(0)
    top = self.cy - 0.05 * self.b
    tip = self.cy + r.uniform(0.2, 0.3) * self.b
    w = self.a * r.uniform(0.13, 0.22)
    shadow = _rgb(_mix(self.skin, [60, 30, 20], 0.45), 110)
    side = 1 if self.light[0] < 0 else -1
    d.line(self.poly([(nx + side * w * 0.5, top), (nx + side * w * 0.7, tip - 0.02)]),
           fill=shadow, width=max(1, int(self.s(0.008))))
    d.ellipse(self.box(nx, tip, w * 0.6, w * 0.45), fill=_rgb(_mix(self.skin, [255, 230, 210],
                                                                      0.15), 200))
    for sgn in (-1, 1):
      d.ellipse(self.box(nx + sgn * w * 0.55, tip + w * 0.25, w * 0.28, w * 0.16),
                fill=_rgb(_mix(self.skin, [40, 15, 10], 0.6), 200))
    d.arc(self.box(nx, tip, w * 1.0, w * 0.55), 20, 160, fill=shadow,
          width=max(1, int(self.s(0.006))))

  def _mouth(self, d):
    r = self.rng
    mx = self._feat_x(0)
    my = self.cy + r.uniform(0.5, 0.58) * self.b
    mw = self.a * r.uniform(0.32, 0.48)
    smile = r.uniform(-0.3, 1.0)
    open_ = r.uniform(0.0, 0.09) * self.b if (smile > 0.4 and r.uniform() < 0.5) else 0.0
    uh = self.b * r.uniform(0.035, 0.06)
    lh = self.b * r.uniform(0.05, 0.085)
    lipstick = (not self.masculine) and r.uniform() < 0.4
    self.smile, self.mouth_open, self.lipstick = float(smile), float(open_), bool(lipstick)
    lip = _mix(self.skin, [170, 60, 70], 0.35) if not lipstick else _mix(
        [180, 30, 50], [120, 20, 40], r.uniform())
    t = np.linspace(0, 1, 25)
    x = mx + mw * (2 * t - 1)
    bump = np.sin(np.pi * t)
    mid = my - smile * mw * 0.22 * (1 - bump) + smile * mw * 0.05 * bump
    bow = np.exp(-((t - 0.5) / 0.08) ** 2)
    upper = mid - uh * bump ** 0.6 * (1 - 0.35 * bow)
    low_mid = mid + open_ * bump
    lower = low_mid + lh * bump ** 0.8
    if open_ > 0:
      d.polygon(self.poly(list(zip(x, mid)) + list(zip(x[::-1], low_mid[::-1]))),
                fill=_rgb([60, 20, 25]))
      teeth = mid + open_ * 0.45 * bump
      d.polygon(self.poly(list(zip(x[3:-3], mid[3:-3])) + list(zip(x[3:-3][::-1],
                                                                  teeth[3:-3][::-1]))),
                fill=_rgb([240, 236, 225]))
    d.polygon(self.poly(list(zip(x, mid)) + list(zip(x[::-1], upper[::-1]))),
              fill=_rgb(_mix(lip, [0, 0, 0], 0.12)))
    d.polygon(self.poly(list(zip(x, low_mid)) + list(zip(x[::-1], lower[::-1]))), fill=_rgb(lip))
    d.line(self.poly(list(zip(x, mid))), fill=_rgb(_mix(lip, [0, 0, 0], 0.5), 200),
           width=max(1, int(self.s(0.004))))
    self.moustache = bool(self.has_moustache and r.uniform() < 0.7)
    if self.moustache:
      col = _mix(self.hair, [30, 25, 20], 0.2)
      mt = upper - self.b * 0.045 * (0.6 + 0.4 * bump)
      d.polygon(self.poly(list(zip(x * 1.0, upper + 0.004)) + list(zip(x[::-1], mt[::-1]))),
                fill=_rgb(col, 230))

  def _eyes(self, img: Image.Image):
    r = self.rng
    ey = self.cy - r.uniform(0.02, 0.12) * self.b
    spacing = self.a * r.uniform(0.36, 0.46)
    ew = self.a * r.uniform(0.19, 0.26)
    eh = ew * r.uniform(0.35, 0.55) * (0.75 if r.uniform() < 0.15 else 1.0)
    tilt = r.normal(0, 0.04)
    iris_col = _IRIS[r.integers(len(_IRIS))] * r.uniform(0.85, 1.15)
    gaze = np.array([r.normal(0, 0.25), r.normal(0, 0.12)])
    lid = _mix(self.skin, [40, 20, 15], 0.75)
    self.eye_pos = []
    for sgn in (-1, 1):
      x0 = self._feat_x(sgn * spacing)
      y0 = ey
      self.eye_pos.append((x0, y0, ew, eh))
      # Local sub-image so the iris can be clipped to the almond.
      pad = 0.02
      bx0, by0 = self.p(x0 - ew - pad, y0 - eh * 1.8 - pad)
      bx1, by1 = self.p(x0 + ew + pad, y0 + eh * 1.2 + pad)
      bx0, by0, bx1, by1 = int(bx0), int(by0), int(math.ceil(bx1)), int(math.ceil(by1))
      wdt, hgt = bx1 - bx0, by1 - by0
      sub = img.crop((bx0, by0, bx1, by1))
      sd = ImageDraw.Draw(sub, "RGBA")
      t = np.linspace(0, 1, 24)
      xs = x0 + ew * (2 * t - 1)
      yc = y0 + sgn * tilt * ew * (2 * t - 1)
      up = yc - eh * np.sin(np.pi * t) ** 0.8
      lo = yc + eh * 0.55 * np.sin(np.pi * t) ** 1.1

      def loc(pts):
        return [(self.p(x, y)[0] - bx0, self.p(x, y)[1] - by0) for x, y in pts]

      almond = loc(list(zip(xs, up)) + list(zip(xs[::-1], lo[::-1])))
      clip = Image.new("L", (wdt, hgt), 0)
      ImageDraw.Draw(clip).polygon(almond, fill=255)
      eye = Image.new("RGBA", (wdt, hgt), (0, 0, 0, 0))
      ed = ImageDraw.Draw(eye, "RGBA")
      ed.polygon(almond, fill=(238, 234, 228, 255))
      ir = eh * 0.95
      ix, iy = x0 + gaze[0] * ew * 0.5, y0 - eh * 0.15 + gaze[1] * eh
      cx, cy = self.p(ix, iy)
      rr = self.s(ir)
      ed.ellipse([cx - bx0 - rr, cy - by0 - rr, cx - bx0 + rr, cy - by0 + rr], fill=_rgb(iris_col))
      rp = rr * 0.45
      ed.ellipse([cx - bx0 - rp, cy - by0 - rp, cx - bx0 + rp, cy - by0 + rp], fill=(12, 10, 10))
      hl = rr * 0.18
      hx, hy = cx - bx0 + rr * 0.35, cy - by0 - rr * 0.35
      ed.ellipse([hx - hl, hy - hl, hx + hl, hy + hl], fill=(255, 255, 255, 220))
      sub.paste(eye, (0, 0), clip)
      # Upper lid crease and lash line; a faint lower lid.
      sd.line(almond[:24], fill=_rgb(lid), width=max(1, int(self.s(0.007))), joint="curve")
      crease = loc(list(zip(xs, up - eh * 0.55)))
      sd.line(crease[3:-3], fill=_rgb(_mix(self.skin, [60, 30, 20], 0.35), 150),
              width=max(1, int(self.s(0.004))))
      sd.line(almond[24:], fill=_rgb(_mix(self.skin, [60, 30, 20], 0.3), 120),
              width=max(1, int(self.s(0.003))))
      img.paste(sub, (bx0, by0))

  def _brows(self, d):
    r = self.rng
    thick = self.b * r.uniform(0.02, 0.05) * (1.3 if self.masculine else 1.0)
    arch = r.uniform(0.2, 1.0)
    lift = r.uniform(0.7, 1.3)
    alpha = int(r.uniform(170, 240))
    for x0, y0, ew, eh in self.eye_pos:
      sgn = 1 if x0 > self.cx + self.yaw else -1
      t = np.linspace(0, 1, 16)
      xs = x0 + ew * 1.15 * (2 * t - 1)
      ys = y0 - eh * 1.3 * lift - self.b * 0.04 * arch * np.sin(np.pi * (0.3 + 0.7 * t if sgn > 0
                                                                          else 0.7 * t))
      w = thick * (0.6 + 0.6 * (t if sgn < 0 else 1 - t))
      top = list(zip(xs, ys - w / 2))
      bot = list(zip(xs[::-1], (ys + w / 2)[::-1]))
      d.polygon(self.poly(top + bot), fill=_rgb(self.brow_color, alpha))

  def _hair_front(self, d):
    st = self.hair_style
    if st == "bald":
      return
    r = self.rng
    hair = _rgb(self.hair)
    hairline = self.cy - self.b * r.uniform(0.45, 0.62)
    if st == "bangs":
      hairline = self.cy - self.b * r.uniform(0.25, 0.4)
    # Cap: the head outline above the temples, then a hairline back across the forehead.
    t = np.linspace(np.pi * 1.02, np.pi * 1.98, 40)
    cap = list(zip(self.cx + self.a * 1.06 * np.cos(t), self.cy - 0.04 + self.b * 1.04 * np.sin(t)))
    xs = np.linspace(self.cx + self.a * 1.0, self.cx - self.a * 1.0, 30)
    u = (xs - self.cx) / self.a
    part = r.uniform(-0.6, 0.6) if st == "side_part" else 0.0
    line = hairline + self.b * (0.22 * u ** 2 + 0.12 * np.abs(u) ** 6)
    if st == "side_part":
      line = line - self.b * 0.09 * np.exp(-((u - part) / 0.25) ** 2) + self.b * 0.05 * (
          u - part) * np.sign(part if part else 1)
    if st == "bangs":
      line = line + self.b * 0.025 * np.abs(np.sin(np.arange(len(xs)) * 1.7))
    temple = self.cy + self.b * r.uniform(-0.15, 0.05)
    pts = cap + [(self.cx + self.a * 1.03, temple)] + list(zip(xs, line)) + [
        (self.cx - self.a * 1.03, temple)]
    d.polygon(self.poly(pts), fill=hair)
    self.locks = bool(st in ("long", "curly") and r.uniform() < 0.7)
    if self.locks:
      # Locks falling in front of the ears (and over any earrings).
      for sgn in (-1, 1):
        x = self.cx + sgn * self.a * 0.98
        d.polygon(self.poly([(x - sgn * 0.05, hairline + 0.05), (x + sgn * 0.035, temple - 0.1),
                             (x + sgn * 0.03, self.cy + self.b * 0.75),
                             (x - sgn * 0.012, self.cy + self.b * 0.7)]), fill=hair)

  def _glasses(self, d):
    r = self.rng
    u = r.uniform()
    if u > 0.26:
      return
    sun = u < 0.06
    self.glasses = "sunglasses" if sun else "glasses"
    frame = _rgb(r.choice([0, 1, 2]) == 0 and [30, 30, 30] or r.uniform(20, 200, 3))
    width = max(1, int(self.s(r.uniform(0.006, 0.013))))
    rnd = r.uniform() < 0.5
    for x0, y0, ew, eh in self.eye_pos:
      bx = self.box(x0, y0 - eh * 0.1, ew * 1.35, eh * 2.1)
      fill = (25, 25, 30, 215) if sun else (200, 220, 240, 30)
      if rnd:
        d.ellipse(bx, fill=fill, outline=frame, width=width)
      else:
        d.rounded_rectangle(bx, radius=self.s(ew * 0.4), fill=fill, outline=frame, width=width)
    (xl, yl, ewl, _), (xr, yr, ewr, _) = sorted(self.eye_pos)
    d.line(self.poly([(xl + ewl * 1.35, yl), (xr - ewr * 1.35, yr)]), fill=frame, width=width)
    d.line(self.poly([(xl - ewl * 1.35, yl), (self.cx - self.a * 0.98, yl + 0.01)]), fill=frame,
           width=width)
    d.line(self.poly([(xr + ewr * 1.35, yr), (self.cx + self.a * 0.98, yr + 0.01)]), fill=frame,
           width=width)


def _background(rng, bg, size):
  """A vertical two-colour gradient, sometimes vignetted (smooth: drawn at 32 px, upsampled)."""
  top, bottom = bg
  n = 32
  t = np.linspace(0, 1, n, dtype=np.float32)[:, None, None]
  grad = np.broadcast_to(top[None, None, :] * (1 - t) + bottom[None, None, :] * t, (n, n, 3))
  if rng.uniform() < 0.3:
    yy, xx = np.mgrid[:n, :n] / n - 0.5
    grad = grad * (1 - 0.5 * (xx ** 2 + yy ** 2))[..., None]
  small = Image.fromarray(np.clip(grad, 0, 255).astype(np.uint8), "RGB")
  return small.resize((size, size), Image.BILINEAR)


def _draw_face(seed: int, index: int, canvas: int):
  """(RGB layer, face) of toy face `index` of stream `seed` drawn on a `canvas`-px canvas.

  The random draws do not depend on `canvas`: any canvas gives the same face parameters.
  """
  rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(index)])
  face = _Face(rng, canvas)
  return face.draw(_background(rng, face.bg, face.layer_size)), face


def _render(seed: int, index: int, size: int) -> tuple[np.ndarray, _Face]:
  if not MIN_SIZE <= int(size) <= MAX_SIZE:
    raise ValueError(f"toy faces come in sizes {MIN_SIZE}..{MAX_SIZE}; got {size}")
  if index < 0:
    raise ValueError(f"toy face index must be >= 0; got {index}")
  canvas = _canvas_size(int(size))
  # The whole scene is drawn on a larger square and rolled, then the centre is cropped: no gaps.
  img, face = _draw_face(seed, index, canvas)
  # Reduce first (Lanczos: the anti-aliasing), then roll at output resolution.
  scale = size / canvas
  big = int(round(face.layer_size * scale))
  img = img.resize((big, big), Image.LANCZOS)
  cx, cy = face.p(face.cx, face.cy)
  img = img.rotate(face.roll, resample=Image.BICUBIC, center=(cx * scale, cy * scale))
  m = (big - size) // 2
  img = img.crop((m, m, m + size, m + size))
  arr = np.asarray(img).astype(np.float32)
  arr += face.rng.normal(0, 1.5, arr.shape).astype(np.float32)  # faint sensor noise
  return np.clip(np.round(arr), 0, 255).astype(np.uint8), face


def render_face(seed: int, index: int, size: int = 64) -> np.ndarray:
  """Draws toy face `index` of stream `seed` as uint8 RGB (size, size, 3).

  The same (seed, index) always gives the same face, whatever else was drawn before; `size`
  (32..256) only changes the resolution it is rendered at.
  """
  return _render(seed, index, size)[0]


# ----------------------------------------------------------------------------------------------
# Attributes: categorical labels of what each face shows, from the draws that render it
# ----------------------------------------------------------------------------------------------

# name -> class names; a face's label for `name` indexes into its tuple.
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "hair_style": _HAIR_STYLES,
    # The nine hair colours of _HAIR bucketed by what a viewer would call them.
    "hair_colour": ("black", "brown", "blond", "red", "grey"),
    # Position on the 7-step skin ramp (0 = lightest .. 6 = darkest) in thirds.
    "skin_tone": ("light", "medium", "dark"),
    "beard": ("none", "stubble", "beard", "goatee"),
    "moustache": ("no", "yes"),
    "glasses": ("none", "glasses", "sunglasses"),
    # "smile": corners up by the renderer's own open-mouth threshold (smile >= 0.4); "open":
    # an open smile with teeth, at least 3% of the head height open (thinner reads as closed).
    "mouth": ("neutral", "smile", "open"),
    "lipstick": ("no", "yes"),
    # Earrings that show: drawn on either ear and not hidden under locks of long / curly hair.
    "earrings": ("no", "yes"),
}
ATTRIBUTE_NAMES: tuple[str, ...] = tuple(ATTRIBUTES)
_HAIR_COLOUR_BUCKET = (0, 1, 1, 1, 2, 2, 3, 4, 4)   # _HAIR index -> hair_colour class
# Canvas of the label-only draw: any canvas makes the same draws, hence the same labels; this is
# the one every render of 32..64 px uses (much smaller canvases can break Pillow shapes).
_DRY_RUN_CANVAS = _canvas_size(MIN_SIZE)


def _labels(face: _Face) -> dict[str, int]:
  if face.mouth_open >= 0.03 * face.b:
    mouth = 2
  else:
    mouth = int(face.smile >= 0.4)
  return {
      "hair_style": _HAIR_STYLES.index(face.hair_style),
      "hair_colour": _HAIR_COLOUR_BUCKET[face.hair_index],
      "skin_tone": min(int(face.skin_t / 2.0), 2),
      "beard": ATTRIBUTES["beard"].index(face.beard),
      "moustache": int(face.moustache),
      "glasses": ATTRIBUTES["glasses"].index(face.glasses),
      "mouth": mouth,
      "lipstick": int(face.lipstick),
      "earrings": int(any(face.earrings) and not face.locks),
  }


def face_attributes(seed: int, index: int) -> dict[str, int]:
  """Labels (class indices into `ATTRIBUTES`) of toy face `index` of stream `seed`.

  Computed from the same random draws that render the face (drawn once, not reduced), so they
  hold at every size `render_face` gives.
  """
  if index < 0:
    raise ValueError(f"toy face index must be >= 0; got {index}")
  return _labels(_draw_face(seed, index, _DRY_RUN_CANVAS)[1])


def render_face_with_attributes(seed: int, index: int,
                                size: int = 64) -> tuple[np.ndarray, dict[str, int]]:
  """`(render_face(seed, index, size), face_attributes(seed, index))` from one drawing."""
  image, face = _render(seed, index, size)
  return image, _labels(face)


def attribute_vector(labels: dict[str, int]) -> np.ndarray:
  """int32 (len(ATTRIBUTES),) of a labels dict, in `ATTRIBUTE_NAMES` order."""
  return np.array([labels[name] for name in ATTRIBUTE_NAMES], np.int32)


class ToyFaces:
  """A random-access source of toy faces (grain `RandomAccessDataSource` protocol).

  Args:
    size: output side in pixels (32..256).
    num_images: number of faces in this source.
    seed: stream seed; face i is `render_face(seed, offset + i, size)`.
    offset: first face index, so a train and a test split draw disjoint faces.
    cache_bytes: keep rendered faces in memory when all of them fit in this many bytes
      (28,000 faces at 64 px: 344 MB), so that later epochs skip the drawing (~6 ms a face,
      in the host thread that feeds the training step); 0 turns the cache off. Each worker
      process keeps its own.
  """

  def __init__(self, size: int, num_images: int, seed: int = 0, offset: int = 0,
               cache_bytes: int = 512 << 20):
    if not MIN_SIZE <= int(size) <= MAX_SIZE:
      raise ValueError(f"toy faces come in sizes {MIN_SIZE}..{MAX_SIZE}; got {size}")
    if num_images <= 0:
      raise ValueError(f"toy face source needs num_images > 0; got {num_images}")
    self.size = int(size)
    self.num_images = int(num_images)
    self.seed = int(seed)
    self.offset = int(offset)
    self.cache_bytes = int(cache_bytes)
    self._cache = None          # (num_images, size, size, 3) uint8, made on first use
    self._cached = None         # (num_images,) bool
    self._lock = threading.Lock()

  def __len__(self) -> int:
    return self.num_images

  def __getstate__(self):       # workers start with an empty cache of their own
    return {**self.__dict__, "_cache": None, "_cached": None, "_lock": None}

  def __setstate__(self, state):
    self.__dict__.update(state, _lock=threading.Lock())

  def __getitem__(self, index: int) -> np.ndarray:
    index = int(index)
    if not 0 <= index < self.num_images:
      raise IndexError(f"toy face index {index} out of range [0, {self.num_images})")
    if self.num_images * self.size * self.size * 3 > self.cache_bytes:
      return render_face(self.seed, self.offset + index, self.size)
    with self._lock:
      if self._cache is None:
        self._cache = np.zeros((self.num_images, self.size, self.size, 3), np.uint8)
        self._cached = np.zeros(self.num_images, bool)
    if not self._cached[index]:   # reader threads may draw the same face twice: same pixels
      self._cache[index] = render_face(self.seed, self.offset + index, self.size)
      self._cached[index] = True
    return self._cache[index].copy()

  def __repr__(self) -> str:
    return (f"ToyFaces(size={self.size}, num_images={self.num_images}, seed={self.seed}, "
            f"offset={self.offset})")
