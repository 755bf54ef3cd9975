"""Headless OpenGL rendering of shaded meshes with moderngl (EGL; Mesa llvmpipe on a CPU).

The camera is a pinhole in OpenCV's convention: camera frame x right, y down, z forward (metres);
pixel centres at integer coordinates, (0, 0) the centre of the top-left pixel. One GL context per
process, created on first use and reused (worker processes each get their own).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

MAX_LIGHTS = 2
BACKGROUND_ID = 0

_VERTEX_SHADER = """
#version 330
uniform mat4 projection;
in vec3 in_position;
in vec3 in_normal;
in vec3 in_color;
in float in_id;
out vec3 v_position;
out vec3 v_normal;
out vec3 v_color;
flat out float v_id;
void main() {
    v_position = in_position;
    v_normal = in_normal;
    v_color = in_color;
    v_id = in_id;
    gl_Position = projection * vec4(in_position, 1.0);
}
"""

# Lambert with wrap-around (soft, skin-like falloff) + Blinn-Phong highlights, in linear RGB,
# written out sRGB-encoded. Back faces (the inside of an open mesh end) get the flipped normal.
_FRAGMENT_SHADER = """
#version 330
uniform vec3 light_directions[%(lights)d];
uniform vec3 light_colors[%(lights)d];
uniform vec3 ambient;
uniform float specular;
uniform float shininess;
uniform float wrap;
in vec3 v_position;
in vec3 v_normal;
in vec3 v_color;
flat in float v_id;
layout(location = 0) out vec4 out_color;
layout(location = 1) out float out_id;
void main() {
    vec3 normal = normalize(v_normal);
    if (!gl_FrontFacing) normal = -normal;
    vec3 view = normalize(-v_position);
    vec3 radiance = ambient * v_color;
    for (int i = 0; i < %(lights)d; ++i) {
        vec3 to_light = normalize(light_directions[i]);
        float facing = dot(normal, to_light);
        float diffuse = max((facing + wrap) / (1.0 + wrap), 0.0);
        float highlight = facing > 0.0
            ? pow(max(dot(normal, normalize(to_light + view)), 0.0), shininess) : 0.0;
        radiance += light_colors[i] * (v_color * diffuse + specular * highlight);
    }
    out_color = vec4(pow(clamp(radiance, 0.0, 1.0), vec3(1.0 / 2.2)), 1.0);
    out_id = v_id / 255.0;
}
""" % {'lights': MAX_LIGHTS}


@dataclass(frozen=True)
class Camera:
    """Pinhole intrinsics (pixels) and image size; near/far clip planes in metres."""
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    near: float = 0.02
    far: float = 50.0

    @classmethod
    def from_fov(cls, width: int, height: int, horizontal_fov_deg: float) -> 'Camera':
        """Square pixels, principal point at the image centre."""
        focal = 0.5 * width / np.tan(np.radians(horizontal_fov_deg) / 2.0)
        return cls(focal, focal, (width - 1) / 2.0, (height - 1) / 2.0, width, height)

    def project(self, points: np.ndarray) -> np.ndarray:
        """(N,3) camera-frame points -> (N,2) pixel coordinates."""
        points = np.asarray(points, dtype=np.float64)
        z = points[:, 2]
        return np.stack([self.fx * points[:, 0] / z + self.cx,
                         self.fy * points[:, 1] / z + self.cy], axis=1)

    def scaled(self, factor: int) -> 'Camera':
        """The same view at `factor` times the resolution (pixel centres stay consistent)."""
        return Camera(self.fx * factor, self.fy * factor, (self.cx + 0.5) * factor - 0.5,
                      (self.cy + 0.5) * factor - 0.5, self.width * factor, self.height * factor,
                      self.near, self.far)

    def projection_matrix(self) -> np.ndarray:
        """4x4 OpenGL clip matrix; rows read back top-down give OpenCV pixel rows."""
        width, height, near, far = self.width, self.height, self.near, self.far
        return np.array([
            [2.0 * self.fx / width, 0.0, 2.0 * (self.cx + 0.5) / width - 1.0, 0.0],
            [0.0, -2.0 * self.fy / height, 1.0 - 2.0 * (self.cy + 0.5) / height, 0.0],
            [0.0, 0.0, (far + near) / (far - near), -2.0 * far * near / (far - near)],
            [0.0, 0.0, 1.0, 0.0]])


@dataclass(frozen=True)
class Lighting:
    """Directional lights in the camera frame (direction from the surface to the light), their
    linear RGB intensities, an ambient term and skin-like highlight/wrap parameters."""
    directions: np.ndarray              # (L,3), L <= MAX_LIGHTS
    colors: np.ndarray                  # (L,3)
    ambient: np.ndarray                 # (3,)
    specular: float = 0.12
    shininess: float = 16.0
    wrap: float = 0.3


@dataclass(frozen=True)
class RenderObject:
    """A triangle mesh in the camera frame: vertices/normals (N,3), linear RGB colours (N,3) in
    [0,1], faces (M,3) and an object id 1..255 written to the id buffer."""
    vertices: np.ndarray
    normals: np.ndarray
    colors: np.ndarray
    faces: np.ndarray
    object_id: int


@dataclass
class RenderResult:
    """Anti-aliased render of the objects over black.

    color_bgr (H,W,3) uint8 premultiplied by coverage; coverage (H,W) float32 0..1; object_ids
    (H,W) uint8: the id covering most of each pixel (0 = background); depth (H,W) float32:
    camera z (metres) of the farthest surface sample in the pixel, inf where no surface.
    """
    color_bgr: np.ndarray
    coverage: np.ndarray
    object_ids: np.ndarray
    depth: np.ndarray

    def mask(self, object_id: int) -> np.ndarray:
        """(H,W) bool: pixels where `object_id` is the majority surface."""
        return self.object_ids == object_id


class Renderer:
    """A moderngl standalone context with the shading program and cached framebuffers."""

    def __init__(self):
        import moderngl  # training-only dependency; needs libEGL + Mesa

        self.ctx = moderngl.create_standalone_context(backend='egl')
        self.program = self.ctx.program(vertex_shader=_VERTEX_SHADER,
                                        fragment_shader=_FRAGMENT_SHADER)
        # The y flip of the projection mirrors the screen, so outward (counter-clockwise) faces of
        # glTF meshes arrive clockwise.
        self.ctx.front_face = 'cw'
        self._framebuffers = {}

    def _framebuffer(self, size: tuple[int, int]):
        if size not in self._framebuffers:
            self._framebuffers[size] = self.ctx.framebuffer(
                color_attachments=[self.ctx.renderbuffer(size, 4),
                                   self.ctx.renderbuffer(size, 1)],
                depth_attachment=self.ctx.depth_renderbuffer(size))
        return self._framebuffers[size]

    def render(self, camera: Camera, objects: list[RenderObject], lighting: Lighting,
               supersample: int = 2) -> RenderResult:
        """Draw `objects` seen by `camera`, at `supersample`x the resolution, box-filtered down."""
        if len(lighting.directions) > MAX_LIGHTS or len(lighting.directions) == 0:
            raise ValueError(f'between 1 and {MAX_LIGHTS} lights are supported')
        render_camera = camera.scaled(supersample)
        size = (render_camera.width, render_camera.height)
        framebuffer = self._framebuffer(size)
        framebuffer.use()
        framebuffer.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        self.ctx.enable(self.ctx.DEPTH_TEST)
        if objects:
            self._draw(render_camera, objects, lighting)
        rgba = np.frombuffer(framebuffer.read(components=4, attachment=0), np.uint8)
        ids = np.frombuffer(framebuffer.read(components=1, attachment=1), np.uint8)
        depth = np.frombuffer(framebuffer.read(components=1, attachment=-1, dtype='f4'), np.float32)
        height, width = size[1], size[0]
        rgba = rgba.reshape(height, width, 4)[::-1]
        ids = ids.reshape(height, width)[::-1]
        result = self._downsample(rgba, ids, depth.reshape(height, width)[::-1], supersample, camera,
                                  sorted({obj.object_id for obj in objects}))
        # Linear depth is monotonic in the buffer value: linearising after the downsample is exact.
        result.depth = self._linear_depth(result.depth, camera)
        return result

    def _draw(self, camera: Camera, objects: list[RenderObject], lighting: Lighting) -> None:
        vertex_data, index_data, offset = [], [], 0
        for obj in objects:
            count = len(obj.vertices)
            vertex_data.append(np.hstack([obj.vertices, obj.normals, obj.colors,
                                          np.full((count, 1), obj.object_id)]).astype(np.float32))
            index_data.append(obj.faces.astype(np.uint32) + offset)
            offset += count
        vbo = self.ctx.buffer(np.concatenate(vertex_data).tobytes())
        ibo = self.ctx.buffer(np.concatenate(index_data).tobytes())
        vao = self.ctx.vertex_array(self.program, [(vbo, '3f 3f 3f 1f', 'in_position', 'in_normal',
                                                    'in_color', 'in_id')], index_buffer=ibo)
        program = self.program
        program['projection'].write(camera.projection_matrix().T.astype(np.float32).tobytes())
        directions = np.zeros((MAX_LIGHTS, 3), np.float32)
        colors = np.zeros((MAX_LIGHTS, 3), np.float32)
        directions[:len(lighting.directions)] = lighting.directions
        directions[len(lighting.directions):] = (0.0, 0.0, -1.0)
        colors[:len(lighting.colors)] = lighting.colors
        program['light_directions'].write(directions.tobytes())
        program['light_colors'].write(colors.tobytes())
        program['ambient'].value = tuple(float(v) for v in lighting.ambient)
        program['specular'].value = float(lighting.specular)
        program['shininess'].value = float(lighting.shininess)
        program['wrap'].value = float(lighting.wrap)
        vao.render()
        vao.release()
        vbo.release()
        ibo.release()

    @staticmethod
    def _linear_depth(buffer: np.ndarray, camera: Camera) -> np.ndarray:
        near, far = camera.near, camera.far
        ndc = 2.0 * buffer - 1.0
        with np.errstate(divide='ignore'):
            depth = np.float32(2.0 * far * near) / (np.float32(far + near)
                                                    - ndc * np.float32(far - near))
        depth[buffer >= 1.0] = np.inf
        return depth

    @staticmethod
    def _downsample(rgba: np.ndarray, ids: np.ndarray, depth: np.ndarray, factor: int,
                    camera: Camera, ids_present: list[int]) -> RenderResult:
        height, width = camera.height, camera.width
        if factor == 1:
            coverage = rgba[:, :, 3].astype(np.float32) / 255.0
            return RenderResult(np.ascontiguousarray(rgba[:, :, 2::-1]), coverage,
                                ids.copy(), depth)
        small = cv2.resize(rgba, (width, height), interpolation=cv2.INTER_AREA)
        # The factor x factor samples of each output pixel, as strided views (fast reductions).
        offsets = [(row, column) for row in range(factor) for column in range(factor)]
        id_samples = [ids[row::factor, column::factor] for row, column in offsets]
        counts = {BACKGROUND_ID: sum((sample == BACKGROUND_ID).astype(np.uint8)
                                     for sample in id_samples)}
        for object_id in ids_present:
            counts[object_id] = sum((sample == object_id).astype(np.uint8) for sample in id_samples)
        object_ids = np.zeros((height, width), np.uint8)
        best_count = counts[BACKGROUND_ID]
        for object_id in ids_present:
            better = counts[object_id] > best_count
            object_ids[better] = object_id
            best_count = np.maximum(best_count, counts[object_id])
        farthest = np.maximum.reduce([depth[row::factor, column::factor] for row, column in offsets])
        return RenderResult(np.ascontiguousarray(small[:, :, 2::-1]),
                            small[:, :, 3].astype(np.float32) / 255.0, object_ids, farthest)


_RENDERER: Renderer | None = None


def get_renderer() -> Renderer:
    """This process's renderer (the GL context is created on the first call)."""
    global _RENDERER
    if _RENDERER is None:
        _RENDERER = Renderer()
    return _RENDERER
