/* meshrecon's 3D viewer (written by meshrecon.apps.viewer3d.write_viewer).
 *
 * Rows of views of GLB meshes and PLY point clouds, drawn with three.js: drag to turn, wheel to
 * zoom, right-drag or shift-drag to pan; the views of a row share one camera. Works in a page
 * opened by double-click (file://), where browsers refuse module imports from files and
 * fetch(): this is a classic script, three.js's module sources come as text from
 * three-bundle.js and are linked here through blob: URLs, and the models come as base64 from
 * <name>-data.js. One WebGL context draws every view of the page (browsers keep about 16 alive
 * per page, a report has dozens of views); each picture is copied into the view's own 2D
 * canvas. Without WebGL 2 the viewer stays hidden and the page's static pictures stay in view.
 */
(function () {
  "use strict";
  if (window.MeshreconViewer) {
    window.MeshreconViewer.mountAll();
    return;
  }
  const me = document.currentScript;
  const base = me && me.src ? me.src.slice(0, me.src.lastIndexOf("/") + 1) : "viewer/";
  const BACKGROUND = 0xffffff;
  const DEFAULT_COLOR = [0.55, 0.62, 0.72];
  const MODES = ["shaded", "wireframe", "points"];
  let threePromise = null;
  let renderer = null;
  let rendererSize = [0, 0];
  const dirty = new Set();
  let frameRequested = false;

  function loadScript(src) {
    return new Promise(function (resolve, reject) {
      const s = document.createElement("script");
      s.src = src;
      s.onload = function () { resolve(); };
      s.onerror = function () { reject(new Error("could not load " + src)); };
      document.head.appendChild(s);
    });
  }

  // three.js's modules, each a blob: URL whose import specifiers name its dependencies' URLs.
  function linkThree() {
    const lib = window.MESHRECON_THREE;
    if (!lib) throw new Error("three-bundle.js did not define MESHRECON_THREE");
    const urls = {};
    for (const name of lib.order) {
      let source = lib.modules[name];
      const imports = lib.imports[name] || {};
      for (const spec of Object.keys(imports)) {
        source = source.split("from '" + spec + "'").join("from '" + urls[imports[spec]] + "'");
      }
      urls[name] = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
    }
    return Promise.all(lib.entries.map(function (name) { return import(urls[name]); }))
      .then(function (mods) { return Object.assign({}, ...mods); });
  }

  function loadThree() {
    if (!threePromise) {
      const ready = window.MESHRECON_THREE ? Promise.resolve() : loadScript(base + "three-bundle.js");
      threePromise = ready.then(linkThree);
    }
    return threePromise;
  }

  function hasWebGL2() {
    try {
      const gl = document.createElement("canvas").getContext("webgl2");
      if (!gl) return false;
      const lose = gl.getExtension("WEBGL_lose_context");
      if (lose) lose.loseContext();
      return true;
    } catch (e) {
      return false;
    }
  }

  function bytes(b64) {
    const bin = atob(b64);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out.buffer;
  }

  // [{geometry, points}] in the file's frame (node transforms applied).
  function parseModel(T, item) {
    const buffer = bytes(item.data);
    if (item.format === "ply") {
      const geometry = new T.PLYLoader().parse(buffer);
      return Promise.resolve([{ geometry: geometry, points: geometry.index === null }]);
    }
    return new Promise(function (resolve, reject) {
      new T.GLTFLoader().parse(buffer, "", function (gltf) {
        const parts = [];
        gltf.scene.updateMatrixWorld(true);
        gltf.scene.traverse(function (o) {
          if (o.isMesh || o.isPoints) {
            const geometry = o.geometry.clone();
            geometry.applyMatrix4(o.matrixWorld);
            parts.push({ geometry: geometry, points: !!o.isPoints });
          }
        });
        resolve(parts);
      }, reject);
    });
  }

  let disc = null;
  // A round sprite for points (three.js draws squares otherwise).
  function discTexture(T) {
    if (!disc) {
      const c = document.createElement("canvas");
      c.width = c.height = 64;
      const ctx = c.getContext("2d");
      ctx.fillStyle = "#fff";
      ctx.beginPath();
      ctx.arc(32, 32, 30, 0, 2 * Math.PI);
      ctx.fill();
      disc = new T.CanvasTexture(c);
    }
    return disc;
  }

  // One object per display mode; a point cloud looks the same in all three. With size
  // attenuation a point of size s is s * tan(fov / 2) wide in the scene: points are made 3 %
  // (clouds) or 1.5 % (mesh vertices) of the model's extent wide.
  function makeObjects(T, parts, rgb, extent, fov) {
    const unit = extent / Math.tan((fov * Math.PI) / 360);
    const color = new T.Color().setRGB(rgb[0], rgb[1], rgb[2], T.SRGBColorSpace);
    const groups = {};
    for (const mode of MODES) groups[mode] = new T.Group();
    for (const part of parts) {
      const g = part.geometry;
      const vertexColors = !!g.getAttribute("color");
      const tint = vertexColors ? new T.Color(0xffffff) : color;
      if (part.points) {
        const material = new T.PointsMaterial({
          color: tint, vertexColors: vertexColors, size: 0.03 * unit, sizeAttenuation: true,
          alphaMap: discTexture(T), transparent: true, alphaTest: 0.5,
        });
        for (const mode of MODES) groups[mode].add(new T.Points(g, material));
        continue;
      }
      groups.shaded.add(new T.Mesh(g, new T.MeshStandardMaterial({
        color: tint, vertexColors: vertexColors, flatShading: true, side: T.DoubleSide,
        roughness: 0.85, metalness: 0.0,
      })));
      groups.wireframe.add(new T.Mesh(g, new T.MeshBasicMaterial({
        color: tint.clone().multiplyScalar(0.7), vertexColors: vertexColors, wireframe: true,
      })));
      groups.points.add(new T.Points(g, new T.PointsMaterial({
        color: tint, vertexColors: vertexColors, size: 0.015 * unit, sizeAttenuation: true,
        alphaMap: discTexture(T), transparent: true, alphaTest: 0.5,
      })));
    }
    return groups;
  }

  function bounds(T, partsList) {
    const box = new T.Box3();
    for (const parts of partsList) {
      for (const p of parts) {
        p.geometry.computeBoundingBox();
        box.union(p.geometry.boundingBox);
      }
    }
    return box;
  }

  function drawView(v) {
    const c = v.canvas;
    const w = c.clientWidth, h = c.clientHeight;
    if (!w || !h) return;
    const dpr = Math.min(window.devicePixelRatio || 1, 2);
    const W = Math.max(1, Math.round(w * dpr)), H = Math.max(1, Math.round(h * dpr));
    if (c.width !== W || c.height !== H) {
      c.width = W;
      c.height = H;
    }
    if (rendererSize[0] !== W || rendererSize[1] !== H) {
      renderer.setSize(W, H, false);
      rendererSize = [W, H];
    }
    v.camera.aspect = W / H;
    v.camera.updateProjectionMatrix();
    v.light.target.position.copy(v.controls.target);
    renderer.render(v.scene, v.camera);
    v.ctx.drawImage(renderer.domElement, 0, 0);
  }

  function requestDraw(views) {
    for (const v of views) dirty.add(v);
    if (frameRequested) return;
    frameRequested = true;
    requestAnimationFrame(function () {
      frameRequested = false;
      const todo = Array.from(dirty);
      dirty.clear();
      for (const v of todo) drawView(v);
      for (const root of new Set(todo.map(function (v) { return v.root; }))) {
        root.dataset.frames = String((+root.dataset.frames || 0) + 1);
      }
    });
  }

  function buildGroup(T, root, groupEl, group) {
    const canvases = Array.from(groupEl.querySelectorAll("canvas[data-item]"));
    const items = canvases.map(function (c) { return group.items[+c.dataset.item]; });
    return Promise.all(items.map(function (item) { return parseModel(T, item); }))
      .then(function (partsList) {
        const box = bounds(T, partsList);
        const size = box.getSize(new T.Vector3());
        const extent = Math.max(size.x, size.y, size.z) || 1;
        const radius = size.length() / 2 || 1;
        const target = group.target ? new T.Vector3().fromArray(group.target)
          : box.getCenter(new T.Vector3());
        const position = new T.Vector3().fromArray(group.position);
        if (position.distanceTo(target) < 1e-9 * radius) position.set(target.x, target.y, target.z - 3 * radius);
        const distance = position.distanceTo(target);
        const home = { position: position, target: target };
        const views = canvases.map(function (canvas, k) {
          const scene = new T.Scene();
          scene.add(new T.HemisphereLight(0xffffff, 0x8090a0, 1.8));
          // A key light above and to the right of the camera, turning with it.
          const light = new T.DirectionalLight(0xffffff, 1.8);
          light.position.set(0.5 * distance, 0.8 * distance, 0);
          scene.add(light.target);
          const rgb = items[k].color || DEFAULT_COLOR;
          // Points sized by their own model, not by the row (one huge prediction would blow
          // up everyone's points).
          const own = bounds(T, [partsList[k]]).getSize(new T.Vector3());
          const ownExtent = Math.max(own.x, own.y, own.z) || extent;
          const objects = makeObjects(T, partsList[k], rgb, ownExtent, group.fov);
          for (const mode of MODES) scene.add(objects[mode]);
          const camera = new T.PerspectiveCamera(group.fov, group.aspect,
            Math.max(distance * 1e-3, radius * 1e-3), distance + 50 * radius);
          camera.add(light);
          scene.add(camera);
          const controls = new T.OrbitControls(camera, canvas);
          controls.enableDamping = false;
          controls.minDistance = radius * 0.05;
          controls.maxDistance = distance + 20 * radius;
          return {
            root: root, canvas: canvas, ctx: canvas.getContext("2d"), scene: scene,
            camera: camera, controls: controls, light: light, objects: objects,
          };
        });
        function reset() {
          for (const v of views) {
            v.camera.position.copy(home.position);
            v.camera.up.set(0, 1, 0);
            v.controls.target.copy(home.target);
            v.camera.lookAt(home.target);
            v.camera.updateMatrixWorld();
          }
          requestDraw(views);
        }
        let syncing = false;
        for (const v of views) {
          v.controls.addEventListener("change", function () {
            if (syncing) return;
            syncing = true;
            for (const w of views) {
              if (w === v) continue;
              w.camera.position.copy(v.camera.position);
              w.camera.quaternion.copy(v.camera.quaternion);
              w.camera.up.copy(v.camera.up);
              w.controls.target.copy(v.controls.target);
              w.camera.updateMatrixWorld();
            }
            syncing = false;
            requestDraw(views);
          });
        }
        if (window.ResizeObserver) {
          const observer = new ResizeObserver(function () { requestDraw(views); });
          for (const v of views) observer.observe(v.canvas);
        }
        reset();
        return { views: views, reset: reset };
      });
  }

  function setMode(groups, mode) {
    for (const g of groups) {
      for (const v of g.views) {
        for (const m of MODES) v.objects[m].visible = m === mode;
      }
      requestDraw(g.views);
    }
  }

  function fail(root, why) {
    root.dataset.state = "failed";
    root.dataset.error = why;
    const note = document.createElement("p");
    note.className = "mrv-unavailable";
    note.textContent = "3D viewer unavailable (" + why + "): showing the pictures.";
    root.insertAdjacentElement("afterend", note);
    console.warn("meshrecon viewer: " + why);
  }

  function mount(root) {
    if (root.dataset.state) return;
    root.dataset.state = "loading";
    const data = (window.MESHRECON_VIEWER_DATA || {})[root.dataset.viewer];
    if (!data) return fail(root, "its data file viewer/" + root.dataset.viewer + "-data.js did not load");
    if (!hasWebGL2()) return fail(root, "this browser offers no WebGL 2");
    loadThree().then(function (T) {
      if (!renderer) {
        renderer = new T.WebGLRenderer({ antialias: true, preserveDrawingBuffer: true });
        renderer.setClearColor(BACKGROUND, 1);
      }
      root.hidden = false;  // laid out before the first picture is drawn
      const groupEls = Array.from(root.querySelectorAll(".mrv-group"));
      return Promise.all(groupEls.map(function (el) {
        return buildGroup(T, root, el, data.groups[+el.dataset.group]);
      }));
    }).then(function (groups) {
      for (const input of root.querySelectorAll(".mrv-modes input")) {
        input.addEventListener("change", function () { if (input.checked) setMode(groups, input.value); });
      }
      const checked = root.querySelector(".mrv-modes input:checked");
      setMode(groups, checked ? checked.value : "shaded");
      const button = root.querySelector(".mrv-reset");
      if (button) button.addEventListener("click", function () { for (const g of groups) g.reset(); });
      const fallback = root.dataset.fallback && document.getElementById(root.dataset.fallback);
      if (fallback) {
        if (fallback.tagName === "DETAILS") fallback.open = false;
        else fallback.hidden = true;
      }
      root.dataset.state = "ready";
    }).catch(function (err) {
      root.hidden = true;
      fail(root, String(err && err.message ? err.message : err));
    });
  }

  function mountAll() {
    document.querySelectorAll(".mrv[data-viewer]").forEach(mount);
  }

  window.MeshreconViewer = { mountAll: mountAll, loadThree: loadThree };
  mountAll();
})();
