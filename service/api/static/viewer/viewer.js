// The poselift viewer: a dropped /v1/lift body is lifted by the service (or a poses file is read as it is),
// then the 2D keypoints are drawn on the left and the 3D skeleton on the right, played at the clip's fps.
//
// Coordinates. Poses are in the camera frame (x right, y down, z forward, mm, pelvis at the origin). The 3D
// view shows them in metres turned 180° about x, so that y is up and the camera looked down -z, as three.js
// expects: display = (x, -y, -z) / 1000. With a trajectory the pelvis moves along it, from the origin:
// display(t) = toDisplay(pose[t][j] + trajectory[t] - trajectory[0]).
//
// window.viewerState exposes what is shown (frame, clip, and `drawn()`: the positions given to three.js and
// to the 2D canvas), for people in the console and for the browser test.

import * as THREE from 'three';
import { OrbitControls } from 'three/addons/controls/OrbitControls.js';

// poselift.skeleton.H36M17_JOINTS and H36M17_PARENTS (tests/service/test_viewer.py checks they agree).
const JOINTS = [
  'pelvis', 'right_hip', 'right_knee', 'right_ankle', 'left_hip', 'left_knee', 'left_ankle', 'spine',
  'thorax', 'neck', 'head', 'left_shoulder', 'left_elbow', 'left_wrist', 'right_shoulder', 'right_elbow',
  'right_wrist',
];
const PARENTS = [-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15];
const LEFT = new Set([4, 5, 6, 11, 12, 13]);
const RIGHT = new Set([1, 2, 3, 14, 15, 16]);
// COCO-17 keypoints (a body sent with layout "coco17") are drawn with COCO's own edges.
const COCO_EDGES = [
  [0, 1], [0, 2], [1, 3], [2, 4], [5, 6], [5, 7], [7, 9], [6, 8], [8, 10], [5, 11], [6, 12], [11, 12],
  [11, 13], [13, 15], [12, 14], [14, 16],
];
const COCO_LEFT = new Set([1, 3, 5, 7, 9, 11, 13, 15]);
const COCO_RIGHT = new Set([2, 4, 6, 8, 10, 12, 14, 16]);
const COLOURS = { left: '#5aa9ff', right: '#ff7a59', centre: '#e8e8e8' };
const DEFAULT_FPS = 30;

const $ = (id) => document.getElementById(id);
const ui = {
  key: $('api-key'), file: $('file'), live: $('live'), drop: $('drop'), status: $('status'),
  canvas: $('view2d'), view3d: $('view3d'), play: $('play'), scrub: $('scrub'), label: $('frame-label'),
  save: $('save'),
};
const DEFAULT_HFOV_DEG = 65; // poselift.geometry.DEFAULT_HFOV_DEG: the focal assumed when a body gives none

// ---------------------------------------------------------------------------------------------- state
let clip = null; // {source, fps, width, height, layout, keypoints|null, poses, trajectory|null, visible|null}
let frame = 0;
let playing = false;
let playStart = { time: 0, frame: 0 };
let drawn2d = [];
let liveSession = null; // {id, sent, done} while a live session streams

window.viewerState = {
  get frame() { return frame; },
  get numFrames() { return clip ? clip.poses.length : 0; },
  get playing() { return playing; },
  get fps() { return clip ? clip.fps : null; },
  get source() { return clip ? clip.source : null; },
  get poses() { return clip ? clip.poses : null; },
  get trajectory() { return clip ? clip.trajectory : null; },
  get live() { return liveSession ? { id: liveSession.id, sent: liveSession.sent, done: liveSession.done } : null; },
  error: null,
  loads: 0, // clips shown so far
  skeleton: { joints: JOINTS, parents: PARENTS },
  drawn() {
    return {
      joints: spheres.map((s) => s.position.toArray()),
      bones: Array.from({ length: JOINTS.length - 1 }, (_, i) => [
        Array.from(bonePositions.slice(6 * i, 6 * i + 3)),
        Array.from(bonePositions.slice(6 * i + 3, 6 * i + 6)),
      ]),
      keypoints2d: drawn2d,
    };
  },
};

function setStatus(message, isError = false) {
  ui.status.textContent = message;
  ui.status.classList.toggle('error', isError);
  window.viewerState.error = isError ? message : null;
}

// ---------------------------------------------------------------------------------------------- input
class InputError extends Error {}

function isArrayOf(value, length, inner) {
  return Array.isArray(value) && (length === null || value.length === length) && value.every(inner);
}
const isNumber = (v) => typeof v === 'number' && Number.isFinite(v);
const isPoint = (n) => (p) => isArrayOf(p, n, isNumber);
const isFrameOf = (joints, n) => (f) => isArrayOf(f, joints, isPoint(n));

function positive(value, name, fallback) {
  if (value === undefined || value === null) {
    if (fallback !== undefined) return fallback;
    throw new InputError(`the file has no "${name}"`);
  }
  if (!isNumber(value) || value <= 0) throw new InputError(`"${name}" must be a positive number`);
  return value;
}

/** A poses file (the video and render tools' format): shown as it is, nothing is sent. */
function clipFromPosesFile(doc) {
  const poses = doc.poses_mm;
  if (!isArrayOf(poses, null, isFrameOf(17, 3)) || poses.length === 0) {
    throw new InputError('"poses_mm" must be a non-empty (T, 17, 3) array of numbers');
  }
  const T = poses.length;
  const keypoints = doc.keypoints_px ?? null;
  // An unseen joint's keypoint is null (docs/outputs.md): not drawn.
  const isKeypoint = (p) => isArrayOf(p, 2, (v) => v === null || isNumber(v));
  if (keypoints !== null && !isArrayOf(keypoints, T, (f) => isArrayOf(f, 17, isKeypoint))) {
    throw new InputError(`"keypoints_px" must be (${T}, 17, 2), like poses_mm`);
  }
  const frameIndex = Array.isArray(doc.frame_index) && doc.frame_index.length === T ? doc.frame_index : null;
  return {
    source: 'poses file',
    name: null,
    body: null,
    fps: positive(doc.fps, 'fps', DEFAULT_FPS),
    width: positive(doc.width, 'width', keypoints ? undefined : 1),
    height: positive(doc.height, 'height', keypoints ? undefined : 1),
    layout: 'h36m17',
    keypoints,
    poses,
    trajectory: optionalTrack(doc.trajectory_mm, T, 'trajectory_mm'),
    visible: Array.isArray(doc.visible) && doc.visible.length === T ? doc.visible : null,
    frameIndex,
  };
}

function optionalTrack(value, T, name) {
  if (value === undefined || value === null) return null;
  if (!isArrayOf(value, T, isPoint(3))) throw new InputError(`"${name}" must be (${T}, 3)`);
  return value.some((p) => p.some((v) => v !== 0)) ? value : null; // all zeros: unknown
}

/** A /v1/lift body: checked only as far as the page needs; the service checks the rest and says what. */
function checkLiftBody(doc) {
  if (!Array.isArray(doc.keypoints) || doc.keypoints.length === 0) {
    throw new InputError('"keypoints" must be a non-empty (T, 17, 2) array');
  }
  positive(doc.width, 'width');
  positive(doc.height, 'height');
}

function clipFromLift(body, poses, answer) {
  const T = poses.length;
  return {
    name: null,
    body,
    source: liveSession ? 'live session' : '/v1/lift',
    fps: isNumber(body.fps) && body.fps > 0 ? body.fps : DEFAULT_FPS,
    width: body.width,
    height: body.height,
    layout: body.layout ?? 'h36m17',
    keypoints: isArrayOf(body.keypoints, null, isFrameOf(17, 2)) ? body.keypoints : null,
    poses,
    trajectory: answer ? optionalTrack(answer.trajectory, T, 'trajectory') : null,
    visible: answer && Array.isArray(answer.visible) ? answer.visible : null,
  };
}

function apiHeaders() {
  const headers = { 'Content-Type': 'application/json' };
  const key = ui.key.value.trim();
  if (key) headers.Authorization = `Bearer ${key}`;
  return headers;
}

/** POST/GET/DELETE to the service next to this page; an error answer throws with the service's message. */
async function api(method, path, body) {
  const response = await fetch(new URL(`../${path}`, window.location.href), {
    method,
    headers: apiHeaders(),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let answer = null;
  try {
    answer = await response.json();
  } catch {
    answer = null;
  }
  if (!response.ok) {
    const message = answer?.error?.message ?? response.statusText;
    throw new Error(`${method} /${path}: ${response.status} ${message}`);
  }
  return answer;
}

async function openText(name, text) {
  stopLive();
  setPlaying(false);
  let doc;
  try {
    doc = JSON.parse(text);
  } catch (error) {
    throw new InputError(`${name} is not JSON (${error.message})`);
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    throw new InputError(`${name} is not a JSON object`);
  }
  if ('poses_mm' in doc) {
    show(clipFromPosesFile(doc), `${name}: poses file`);
  } else if ('keypoints' in doc) {
    checkLiftBody(doc);
    if (ui.live.checked) {
      await startLive(name, doc);
    } else {
      setStatus(`${name}: lifting ${doc.keypoints.length} frames…`);
      const answer = await api('POST', 'v1/lift', doc);
      show({ ...clipFromLift(doc, answer.poses, answer), name }, `${name}: lifted by /v1/lift`);
    }
  } else {
    throw new InputError(`${name} is neither a /v1/lift body ("keypoints") nor a poses file ("poses_mm")`);
  }
}

async function openFile(file) {
  try {
    await openText(file.name, await file.text());
  } catch (error) {
    setStatus(error.message, true);
  }
}

// ---------------------------------------------------------------------------------------------- saving
/** The lifted clip as a poses file (docs/outputs.md): what `poselift.poses_file.load_poses_file` reads. */
function posesFile() {
  const T = clip.poses.length;
  const body = clip.body;
  const focal = isNumber(body.focal_px) && body.focal_px > 0
    ? body.focal_px
    : Math.max(clip.width, clip.height) / (2 * Math.tan((DEFAULT_HFOV_DEG * Math.PI) / 360));
  return {
    fps: clip.fps,
    width: clip.width,
    height: clip.height,
    focal_px: focal,
    joints: JOINTS,
    keypoints_px: clip.keypoints.slice(0, T),
    scores: Array.isArray(body.scores) ? body.scores.slice(0, T) : clip.poses.map(() => JOINTS.map(() => 1)),
    poses_mm: clip.poses,
    trajectory_mm: clip.trajectory ? clip.trajectory.slice(0, T) : clip.poses.map(() => [0, 0, 0]),
    visible: clip.visible ? clip.visible.slice(0, T) : clip.poses.map(() => 1),
  };
}

function canSave() {
  // A poses file holds h36m17 keypoints; a coco17 body's would need the service's conversion.
  return Boolean(clip && clip.body && clip.keypoints && clip.layout === 'h36m17' && clip.poses.length
    && !(liveSession && !liveSession.done));
}

function save() {
  if (!canSave()) return;
  const blob = new Blob([JSON.stringify(posesFile())], { type: 'application/json' });
  const link = document.createElement('a');
  link.href = URL.createObjectURL(blob);
  link.download = `${(clip.name ?? 'clip').replace(/\.json$/i, '')}.poses.json`;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}

// ------------------------------------------------------------------------------- live session (optional)
// The clip's frames are pushed through /v1/sessions as a camera would send them, one batch per display
// frame with whatever frames fell due; each pose is shown as it comes back.

async function startLive(name, body) {
  const camera = Object.fromEntries(
    ['layout', 'width', 'height', 'fps', 'focal_px', 'principal_px'].filter((k) => k in body).map((k) => [k, body[k]]),
  );
  const created = await api('POST', 'v1/sessions', camera);
  const session = { id: created.session_id, body, sent: 0, done: false, busy: false, start: performance.now() };
  liveSession = session;
  const empty = { ...clipFromLift(body, [], null), name };
  show(empty, `${name}: live session ${session.id}`);
}

async function pumpLive(now) {
  const session = liveSession;
  if (!session || session.busy || session.done) return;
  const total = session.body.keypoints.length;
  const due = Math.min(total, Math.floor(((now - session.start) / 1000) * clip.fps) + 1);
  if (due <= session.sent) return;
  session.busy = true;
  const frames = [];
  for (let i = session.sent; i < due; i += 1) {
    const item = { seq: i, keypoints: session.body.keypoints[i] };
    if (session.body.scores) item.scores = session.body.scores[i];
    frames.push(item);
  }
  try {
    const answer = await api('POST', `v1/sessions/${session.id}/frames`, { frames });
    if (liveSession !== session) return;
    for (const pose of answer.poses) {
      if (pose.root && clip.poses.length === 0) clip.trajectory = [];
      clip.poses.push(pose.joints);
      if (clip.trajectory !== null) clip.trajectory.push(pose.root ?? [0, 0, 0]);
    }
    session.sent = due;
    refreshClip();
    showFrame(clip.poses.length - 1);
    if (due === total) {
      session.done = true;
      ui.save.disabled = !canSave();
      await api('DELETE', `v1/sessions/${session.id}`).catch(() => {});
      setStatus(`live session ${session.id}: ${total} frames lifted; scrub or play them`);
    }
  } catch (error) {
    session.done = true;
    setStatus(error.message, true);
  } finally {
    session.busy = false;
  }
}

function stopLive() {
  if (liveSession && !liveSession.done) {
    liveSession.done = true;
    api('DELETE', `v1/sessions/${liveSession.id}`).catch(() => {});
  }
  liveSession = null;
}

// ---------------------------------------------------------------------------------------------- 3D view
const renderer = new THREE.WebGLRenderer({ antialias: true });
renderer.setPixelRatio(window.devicePixelRatio);
ui.view3d.appendChild(renderer.domElement);
const scene = new THREE.Scene();
scene.background = new THREE.Color('#1e2128');
const camera = new THREE.PerspectiveCamera(45, 1, 0.01, 200);
camera.position.set(1.2, 0.9, 3.2); // a little above and to the side of the filming camera
const controls = new OrbitControls(camera, renderer.domElement);
controls.enableDamping = true;
let dirty = true; // the 3D view needs drawing again
controls.addEventListener('change', () => { dirty = true; });
scene.add(new THREE.HemisphereLight('#ffffff', '#404040', 2.5));

const grid = new THREE.GridHelper(10, 20, '#5b6170', '#363a45');
scene.add(grid);
const spheres = JOINTS.map((_, j) => {
  const colour = LEFT.has(j) ? COLOURS.left : RIGHT.has(j) ? COLOURS.right : COLOURS.centre;
  const mesh = new THREE.Mesh(new THREE.SphereGeometry(0.025, 16, 12), new THREE.MeshLambertMaterial({ color: colour }));
  mesh.name = JOINTS[j];
  scene.add(mesh);
  return mesh;
});
// Bone i joins joint i + 1 to its parent: 16 segments, 2 points each.
const bonePositions = new Float32Array((JOINTS.length - 1) * 6);
const boneGeometry = new THREE.BufferGeometry();
boneGeometry.setAttribute('position', new THREE.BufferAttribute(bonePositions, 3));
const boneColours = new Float32Array((JOINTS.length - 1) * 6);
for (let j = 1; j < JOINTS.length; j += 1) {
  const colour = new THREE.Color(LEFT.has(j) ? COLOURS.left : RIGHT.has(j) ? COLOURS.right : COLOURS.centre);
  boneColours.set([...colour.toArray(), ...colour.toArray()], 6 * (j - 1));
}
boneGeometry.setAttribute('color', new THREE.BufferAttribute(boneColours, 3));
const bones = new THREE.LineSegments(boneGeometry, new THREE.LineBasicMaterial({ vertexColors: true }));
bones.frustumCulled = false;
scene.add(bones);
let path = null; // the pelvis trajectory, when the clip has one

/** Camera-frame mm -> display metres (y up, camera looking down -z). */
function toDisplay(p) {
  return [p[0] / 1000, -p[1] / 1000, -p[2] / 1000];
}

/** The joints of frame t in the camera frame, mm: root-relative, moved along the trajectory if known. */
function placedPose(t) {
  const pose = clip.poses[t];
  if (!clip.trajectory) return pose;
  const origin = clip.trajectory[0];
  const root = clip.trajectory[t];
  return pose.map((p) => [0, 1, 2].map((k) => p[k] + root[k] - origin[k]));
}

function refreshClip() {
  const T = clip.poses.length;
  ui.scrub.max = String(Math.max(0, T - 1));
  ui.scrub.disabled = T === 0;
  ui.play.disabled = T === 0;
  // The grid lies under the lowest joint of the whole clip (level in the camera's frame).
  let lowest = 0;
  for (let t = 0; t < T; t += 1) {
    for (const p of placedPose(t)) lowest = Math.min(lowest, toDisplay(p)[1]);
  }
  grid.position.y = T ? lowest - 0.02 : 0;
  if (path) {
    scene.remove(path);
    path.geometry.dispose();
    path = null;
  }
  if (clip.trajectory && T > 1) {
    const origin = clip.trajectory[0];
    const points = clip.trajectory.map((r) => new THREE.Vector3(...toDisplay(r.map((v, k) => v - origin[k]))));
    path = new THREE.Line(new THREE.BufferGeometry().setFromPoints(points), new THREE.LineBasicMaterial({ color: '#c9a227' }));
    scene.add(path);
  }
  dirty = true;
}

function draw3d(t) {
  const pose = placedPose(t).map(toDisplay);
  pose.forEach((p, j) => spheres[j].position.set(p[0], p[1], p[2]));
  for (let j = 1; j < JOINTS.length; j += 1) {
    bonePositions.set([...pose[PARENTS[j]], ...pose[j]], 6 * (j - 1));
  }
  boneGeometry.attributes.position.needsUpdate = true;
  spheres.forEach((s) => { s.visible = true; });
  bones.visible = true;
  dirty = true;
}

// ---------------------------------------------------------------------------------------------- 2D view
function fitCanvas() {
  const { clientWidth, clientHeight } = ui.canvas;
  const ratio = window.devicePixelRatio;
  ui.canvas.width = Math.max(1, Math.round(clientWidth * ratio));
  ui.canvas.height = Math.max(1, Math.round(clientHeight * ratio));
  const size = ui.view3d.getBoundingClientRect();
  renderer.setSize(size.width, size.height, false);
  camera.aspect = size.width / Math.max(1, size.height);
  camera.updateProjectionMatrix();
  dirty = true;
}

function draw2d(t) {
  const ctx = ui.canvas.getContext('2d');
  const { width: W, height: H } = ui.canvas;
  ctx.clearRect(0, 0, W, H);
  drawn2d = [];
  if (!clip || !clip.keypoints || !clip.keypoints[t]) {
    ctx.fillStyle = '#8a90a0';
    ctx.font = `${14 * window.devicePixelRatio}px system-ui`;
    ctx.fillText(clip ? 'this file has no 2D keypoints' : '', 16, 28);
    return;
  }
  // The video frame, letterboxed into the canvas.
  const scale = Math.min(W / clip.width, H / clip.height);
  const ox = (W - clip.width * scale) / 2;
  const oy = (H - clip.height * scale) / 2;
  ctx.fillStyle = '#0d0f13';
  ctx.fillRect(ox, oy, clip.width * scale, clip.height * scale);
  const points = clip.keypoints[t].map(([x, y]) => (isNumber(x) && isNumber(y) ? [ox + x * scale, oy + y * scale] : null));
  drawn2d = points;
  const coco = clip.layout === 'coco17';
  const edges = coco ? COCO_EDGES : PARENTS.map((p, j) => [p, j]).filter(([p]) => p >= 0);
  const side = (j) => ((coco ? COCO_LEFT : LEFT).has(j) ? COLOURS.left : (coco ? COCO_RIGHT : RIGHT).has(j) ? COLOURS.right : COLOURS.centre);
  ctx.lineWidth = 2.5 * window.devicePixelRatio;
  for (const [a, b] of edges) {
    if (!points[a] || !points[b]) continue;
    ctx.strokeStyle = side(b);
    ctx.beginPath();
    ctx.moveTo(...points[a]);
    ctx.lineTo(...points[b]);
    ctx.stroke();
  }
  const radius = 3.5 * window.devicePixelRatio;
  points.forEach((p, j) => {
    if (!p) return;
    ctx.fillStyle = side(j);
    ctx.beginPath();
    ctx.arc(p[0], p[1], radius, 0, 2 * Math.PI);
    ctx.fill();
  });
}

// ---------------------------------------------------------------------------------------------- playback
function show(newClip, message) {
  clip = newClip;
  frame = 0;
  ui.save.disabled = !canSave();
  refreshClip();
  window.viewerState.loads += 1;
  const T = clip.poses.length;
  setStatus(`${message} — ${T} frames at ${clip.fps} fps`);
  if (T > 0) showFrame(0);
  else {
    spheres.forEach((s) => { s.visible = false; });
    bones.visible = false;
    dirty = true;
    draw2d(0);
    ui.label.textContent = 'waiting for the first pose…';
  }
  if (liveSession === null) setPlaying(T > 1);
}

function showFrame(t) {
  frame = t;
  ui.save.disabled = !canSave();
  draw3d(t);
  draw2d(t);
  ui.scrub.value = String(t);
  const T = clip.poses.length;
  const seen = clip.visible && clip.visible[t] !== undefined ? ` · seen ${Math.round(clip.visible[t] * 100)}%` : '';
  const video = clip.frameIndex ? ` · video frame ${clip.frameIndex[t]}` : '';
  ui.label.textContent = `frame ${t + 1} / ${T} · ${(t / clip.fps).toFixed(2)} s${video}${seen}`;
}

function setPlaying(on) {
  playing = Boolean(on && clip && clip.poses.length > 1 && !(liveSession && !liveSession.done));
  ui.play.textContent = playing ? 'Pause' : 'Play';
  playStart = { time: performance.now(), frame };
}

function tick(now) {
  if (liveSession && !liveSession.done) pumpLive(now);
  if (playing) {
    const T = clip.poses.length;
    // rAF's `now` is when this frame began, which can be just before playStart.time.
    const elapsed = Math.max(0, now - playStart.time) / 1000;
    const t = (playStart.frame + Math.floor(elapsed * clip.fps)) % T;
    if (t !== frame) showFrame(t);
  }
  // Rendered only when something moved: WebGL on a CPU-only machine is slow, and an idle page costs nothing.
  if (controls.update() || dirty) {
    dirty = false;
    renderer.render(scene, camera);
  }
}

// ---------------------------------------------------------------------------------------------- wiring
ui.play.addEventListener('click', () => setPlaying(!playing));
ui.save.addEventListener('click', save);
ui.scrub.addEventListener('input', () => {
  setPlaying(false);
  if (clip && clip.poses.length) showFrame(Number(ui.scrub.value));
});
ui.file.addEventListener('change', () => {
  if (ui.file.files.length) openFile(ui.file.files[0]);
  ui.file.value = '';
});
document.addEventListener('keydown', (event) => {
  if (!clip || !clip.poses.length || event.target === ui.key) return;
  if (event.key === ' ') {
    event.preventDefault();
    setPlaying(!playing);
  } else if (event.key === 'ArrowRight' || event.key === 'ArrowLeft') {
    setPlaying(false);
    const T = clip.poses.length;
    showFrame((frame + (event.key === 'ArrowRight' ? 1 : T - 1)) % T);
  }
});
for (const type of ['dragenter', 'dragover']) {
  document.addEventListener(type, (event) => {
    event.preventDefault();
    document.body.classList.add('dragging');
  });
}
document.addEventListener('dragleave', (event) => {
  if (event.relatedTarget === null) document.body.classList.remove('dragging');
});
document.addEventListener('drop', (event) => {
  event.preventDefault();
  document.body.classList.remove('dragging');
  const file = event.dataTransfer && event.dataTransfer.files[0];
  if (file) openFile(file);
});
new ResizeObserver(() => {
  fitCanvas();
  if (clip && clip.poses.length) draw2d(frame);
}).observe(document.querySelector('main'));
fitCanvas();
renderer.setAnimationLoop(tick);
window.viewerState.ready = true;
