// The playground page: builds OpenAI chat requests with interleaved image / video / 3D-scene parts,
// streams the answer from /v1/chat/completions (fetch + ReadableStream SSE parsing) and shows the
// usage. Plain browser JavaScript: no build step, no dependencies, nothing loaded from elsewhere.
"use strict";

(() => {
  // Visual tokens per image, video frame or scene view: SigLIP at 384 px with 14 px patches gives
  // 27 x 27 = 729 tokens, no CLS token. Only used when the server's usage does not report the count.
  const TOKENS_PER_IMAGE = 729;
  // Frames the server samples from a video that gives no num_frames (its --default-num-frames).
  const SERVER_DEFAULT_FRAMES = 16;
  const VIDEO_EXT = /\.(mp4|m4v|mov|webm|mkv|avi|mpe?g|ogv|3gp)$/i;
  const IMAGE_EXT = /\.(png|jpe?g|gif|webp|bmp|tiff?|avif|heic)$/i;
  const MIME_BY_EXT = {
    png: "image/png", jpg: "image/jpeg", jpeg: "image/jpeg", gif: "image/gif", webp: "image/webp",
    bmp: "image/bmp", tif: "image/tiff", tiff: "image/tiff", mp4: "video/mp4", m4v: "video/mp4",
    mov: "video/quicktime", webm: "video/webm", mkv: "video/x-matroska", avi: "video/x-msvideo",
  };

  const $ = (id) => document.getElementById(id);
  const fmt = (n) => Number(n).toLocaleString("en-US");

  const state = {
    apiKey: "", // in memory only: never written to storage, cookies or the URL
    conversation: [], // [{role, content, el, partEls}] as sent; the whole list goes out each turn
    parts: [], // the next message's parts, in send order
    busy: false,
    controller: null,
    nextId: 1,
    objectUrls: [],
  };

  // ---------------------------------------------------------------------------------------------
  // Server helpers
  // ---------------------------------------------------------------------------------------------

  function headers(json) {
    const h = {};
    if (json) h["Content-Type"] = "application/json";
    if (state.apiKey) h["Authorization"] = "Bearer " + state.apiKey;
    return h;
  }

  async function loadModel() {
    const el = $("model-name");
    try {
      const resp = await fetch("/v1/models", { headers: headers(false) });
      if (resp.status === 401) {
        el.textContent = "(enter the API key)";
        return;
      }
      const body = await resp.json();
      el.textContent = body.data && body.data.length ? body.data[0].id : "(not loaded yet)";
    } catch (err) {
      el.textContent = "(server not reachable)";
    }
  }

  class ApiError extends Error {
    constructor(status, error) {
      super((error && error.message) || `HTTP ${status}`);
      this.status = status;
      this.param = (error && error.param) || null;
      this.code = (error && error.code) || null;
    }
  }

  async function errorFrom(resp) {
    let error = null;
    try {
      error = (await resp.json()).error;
    } catch (e) {
      error = { message: `HTTP ${resp.status} ${resp.statusText}` };
    }
    return new ApiError(resp.status, error);
  }

  // Yields the parsed JSON of each `data:` event until `data: [DONE]`.
  async function* sseEvents(body) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    const boundary = /\r?\n\r?\n/;
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let m;
      while ((m = boundary.exec(buffer)) !== null) {
        const raw = buffer.slice(0, m.index);
        buffer = buffer.slice(m.index + m[0].length);
        const data = raw
          .split(/\r?\n/)
          .filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(5).replace(/^ /, ""))
          .join("\n");
        if (!data) continue;
        if (data === "[DONE]") return;
        yield JSON.parse(data);
      }
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Parts of the next message
  // ---------------------------------------------------------------------------------------------

  function kindOf(file) {
    if (file.type.startsWith("image/")) return "image";
    if (file.type.startsWith("video/")) return "video";
    if (IMAGE_EXT.test(file.name)) return "image";
    if (VIDEO_EXT.test(file.name)) return "video";
    return null;
  }

  function mimeOf(file, kind) {
    if (file.type) return file.type;
    const ext = (file.name.split(".").pop() || "").toLowerCase();
    return MIME_BY_EXT[ext] || (kind === "video" ? "video/mp4" : "image/png");
  }

  function objectUrl(file) {
    const url = URL.createObjectURL(file);
    state.objectUrls.push(url);
    return url;
  }

  function readDataUrl(file, kind) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => {
        // FileReader names the file's own type; make sure a media type is there for the server.
        const url = String(reader.result);
        resolve(url.replace(/^data:[^;,]*;base64,/, `data:${mimeOf(file, kind)};base64,`));
      };
      reader.onerror = () => reject(new Error(`Could not read ${file.name}: ${reader.error}`));
      reader.readAsDataURL(file);
    });
  }

  // A poster frame (a JPEG data URL) and the duration of a video, or poster null when the browser
  // cannot decode it (the server may still can: it decodes with FFmpeg).
  function posterFrame(file) {
    return new Promise((resolve) => {
      const url = URL.createObjectURL(file);
      const video = document.createElement("video");
      video.muted = true;
      video.preload = "auto";
      video.playsInline = true;
      let finished = false;
      const finish = (poster) => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        const duration = Number.isFinite(video.duration) ? video.duration : null;
        video.removeAttribute("src");
        video.load();
        URL.revokeObjectURL(url);
        resolve({ poster, duration });
      };
      const timer = setTimeout(() => finish(null), 10000);
      const draw = () => {
        try {
          const canvas = document.createElement("canvas");
          const w = 192;
          canvas.width = w;
          canvas.height = Math.max(1, Math.round((w * video.videoHeight) / Math.max(1, video.videoWidth)));
          canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
          finish(canvas.toDataURL("image/jpeg", 0.85));
        } catch (err) {
          finish(null);
        }
      };
      video.addEventListener("error", () => finish(null));
      video.addEventListener("loadeddata", () => {
        const d = video.duration;
        const t = Number.isFinite(d) && d > 0 ? Math.min(d * 0.1, 1.0) : 0;
        if (t > 0) {
          video.addEventListener("seeked", draw, { once: true });
          video.currentTime = t;
        } else {
          draw();
        }
      });
      video.src = url;
    });
  }

  function addFiles(files) {
    const rejected = [];
    for (const file of files) {
      const kind = kindOf(file);
      if (kind === null) {
        rejected.push(file.name);
        continue;
      }
      const part = { id: state.nextId++, kind, files: [file], thumbs: [], labels: [], text: "" };
      if (kind === "image") {
        part.thumbs = [objectUrl(file)];
      } else {
        part.thumbs = [undefined]; // pending poster frame
        posterFrame(file).then(({ poster, duration }) => {
          part.thumbs = [poster];
          part.duration = duration;
          if (state.parts.includes(part)) renderParts();
        });
      }
      state.parts.push(part);
    }
    showAttachError(rejected.length ? `Not an image or a video, not added: ${rejected.join(", ")}` : "");
    renderParts();
  }

  function addScene(files) {
    const images = [...files].filter((f) => kindOf(f) === "image");
    const rejected = [...files].filter((f) => kindOf(f) !== "image").map((f) => f.name);
    showAttachError(rejected.length ? `Scene views must be images, not added: ${rejected.join(", ")}` : "");
    if (!images.length) return;
    state.parts.push({
      id: state.nextId++,
      kind: "scene",
      files: images,
      thumbs: images.map(objectUrl),
      labels: images.map(() => ""),
      text: "",
    });
    renderParts();
  }

  function addText() {
    const part = { id: state.nextId++, kind: "text", files: [], thumbs: [], labels: [], text: "" };
    state.parts.push(part);
    renderParts();
    const box = document.querySelector(`[data-part="${part.id}"] textarea`);
    if (box) box.focus();
  }

  function framesRequested() {
    const v = $("num-frames").value.trim();
    return v === "" ? null : Number(v);
  }

  function describe(part, index) {
    const n = index + 1;
    if (part.kind === "image") return { title: `Image ${n}: ${part.files[0].name}`, detail: `${fmt(TOKENS_PER_IMAGE)} visual tokens` };
    if (part.kind === "video") {
      const frames = framesRequested() || SERVER_DEFAULT_FRAMES;
      const dur = part.duration ? `${part.duration.toFixed(1)} s, ` : "";
      return {
        title: `Video ${n}: ${part.files[0].name}`,
        detail: `${dur}${frames} frames × ${TOKENS_PER_IMAGE} = ${fmt(frames * TOKENS_PER_IMAGE)} visual tokens (fewer if the clip has fewer frames)`,
      };
    }
    if (part.kind === "scene") {
      const v = part.files.length;
      return { title: `Scene ${n}: ${v} view${v === 1 ? "" : "s"}`, detail: `${v} × ${TOKENS_PER_IMAGE} = ${fmt(v * TOKENS_PER_IMAGE)} visual tokens` };
    }
    return { title: `Text part ${n}`, detail: "" };
  }

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) if (c) node.append(c);
    return node;
  }

  function thumb(url, alt) {
    if (url === undefined) return el("div", { class: "noposter", role: "img", "aria-label": `${alt} (loading)`, text: "loading…" });
    if (url === null) return el("div", { class: "noposter", role: "img", "aria-label": `${alt}: no preview`, text: "no preview" });
    return el("img", { src: url, alt });
  }

  function renderParts(focus) {
    const list = $("parts");
    list.replaceChildren();
    state.parts.forEach((part, i) => {
      const { title, detail } = describe(part, i);
      const titleId = `part-${part.id}-title`;
      const errorId = `part-${part.id}-error`;
      const thumbs = el("div", { class: "thumbs" });
      part.files.forEach((file, k) => {
        const alt = part.kind === "video" ? `Poster frame of ${file.name}` : `Preview of ${file.name}`;
        thumbs.append(thumb(part.thumbs[k], alt));
      });
      const info = el("div", { class: "info" }, el("p", { class: "title", id: titleId, text: title }));
      if (detail) info.append(el("p", { class: "detail", text: detail }));
      if (part.kind === "text") {
        const box = el("textarea", { rows: "2", "aria-label": title, "aria-describedby": errorId });
        box.value = part.text;
        box.addEventListener("input", () => { part.text = box.value; });
        info.append(box);
      }
      if (part.kind === "scene") {
        const labels = el("div", { class: "labels" });
        part.files.forEach((file, k) => {
          const input = el("input", {
            type: "text",
            placeholder: `view ${k + 1} label`,
            "aria-label": `Label of view ${k + 1} (${file.name}) of scene ${i + 1}, optional`,
          });
          input.value = part.labels[k];
          input.addEventListener("input", () => { part.labels[k] = input.value; });
          labels.append(input);
        });
        info.append(labels);
      }
      const button = (action, label, text, disabled) =>
        el("button", { type: "button", "data-action": action, "aria-label": `${label} ${title}`, disabled, text });
      const buttons = el(
        "div",
        { class: "buttons" },
        button("up", "Move up", "↑", i === 0),
        button("down", "Move down", "↓", i === state.parts.length - 1),
        button("remove", "Remove", "✕", false),
      );
      const error = el("p", { class: "error", id: errorId, role: "alert", hidden: !part.error, text: part.error || "" });
      const li = el("li", { class: `part ${part.kind}${part.error ? " invalid" : ""}`, "data-part": part.id, "data-kind": part.kind, "aria-labelledby": titleId, "aria-describedby": errorId }, thumbs, info, buttons, error);
      buttons.addEventListener("click", (ev) => {
        const action = ev.target.closest("button")?.dataset.action;
        if (action) partAction(part, action);
      });
      list.append(li);
    });
    if (focus) {
      const target = list.querySelector(`[data-part="${focus.id}"] [data-action="${focus.action}"]:not(:disabled)`)
        || list.querySelector(`[data-part="${focus.id}"] [data-action="remove"]`);
      if (target) target.focus();
    }
  }

  function partAction(part, action) {
    const i = state.parts.indexOf(part);
    if (i < 0 || state.busy) return;
    if (action === "remove") {
      state.parts.splice(i, 1);
      renderParts();
      const next = state.parts[Math.min(i, state.parts.length - 1)];
      if (next) document.querySelector(`[data-part="${next.id}"] [data-action="remove"]`)?.focus();
      else $("add-images").focus();
      return;
    }
    const j = action === "up" ? i - 1 : i + 1;
    if (j < 0 || j >= state.parts.length) return;
    [state.parts[i], state.parts[j]] = [state.parts[j], state.parts[i]];
    renderParts({ id: part.id, action });
  }

  function showAttachError(message) {
    const p = $("attach-error");
    p.textContent = message;
    p.hidden = !message;
  }

  // ---------------------------------------------------------------------------------------------
  // Errors next to what caused them
  // ---------------------------------------------------------------------------------------------

  const FIELD_OF_PARAM = {
    max_tokens: "max-tokens",
    max_completion_tokens: "max-tokens",
    temperature: "temperature",
    image_placement: "image-placement",
  };

  function clearErrors() {
    for (const part of state.parts) part.error = null;
    document.querySelectorAll(".part.invalid, .turn .invalid").forEach((n) => n.classList.remove("invalid"));
    document.querySelectorAll(".turn .error").forEach((n) => n.remove());
    for (const id of ["message", "max-tokens", "temperature", "image-placement", "num-frames"]) {
      $(id).removeAttribute("aria-invalid");
      const p = $(`${id}-error`);
      p.hidden = true;
      p.textContent = "";
    }
    $("form-error").hidden = true;
    $("form-error").textContent = "";
    showAttachError("");
    renderParts();
  }

  function showFieldError(id, message) {
    $(id).setAttribute("aria-invalid", "true");
    const p = $(`${id}-error`);
    p.textContent = message;
    p.hidden = false;
  }

  function showFormError(message) {
    const p = $("form-error");
    p.textContent = message;
    p.hidden = false;
  }

  // `sources[j]` says what made content part j of the new message: a part object or "message".
  function showApiError(err, sources) {
    const where = placeError(err, sources);
    const status = err.status ? ` (HTTP ${err.status}${err.code ? ", " + err.code : ""})` : "";
    showFormError(where ? `The server refused the request${status}: see the message next to ${where}.` : `The server refused the request${status}: ${readable(err)}`);
  }

  // The server's message without the echo of the param and of a data: URL it starts with, then the
  // param in brackets: "The data is not a video in a format we can read (messages[2].content[0])".
  function readable(err) {
    let text = err.message;
    if (err.param && text.startsWith(err.param + ": ")) text = text.slice(err.param.length + 2);
    text = text.replace(/^data:[^\s,]*,\S*?(?:\.\.\.|…)?:\s+/, "");
    text = text.charAt(0).toUpperCase() + text.slice(1);
    return err.param ? `${text} (${err.param})` : text;
  }

  // Puts the message next to the part/field the `param` names; returns what it was put next to.
  function placeError(err, sources) {
    const message = readable(err);
    const param = err.param || "";
    const field = FIELD_OF_PARAM[param];
    if (field) {
      showFieldError(field, message);
      return `“${document.querySelector(`label[for="${field}"]`).textContent}”`;
    }
    const m = /^messages\[(\d+)\]\.content\[(\d+)\]/.exec(param);
    if (!m) return null;
    const i = Number(m[1]);
    const j = Number(m[2]);
    if (i === state.conversation.length) {
      const source = sources[j];
      if (source === "message") {
        showFieldError("message", message);
        return "the message";
      }
      if (source) {
        source.error = message;
        if (/\.num_frames$/.test(param)) showFieldError("num-frames", message);
        renderParts();
        return describe(source, state.parts.indexOf(source)).title;
      }
      return null;
    }
    const turn = state.conversation[i];
    const target = turn && (turn.partEls[j] || turn.el);
    if (!target) return null;
    target.classList.add("invalid");
    target.append(el("p", { class: "error", role: "alert", text: message }));
    return `part ${j + 1} of message ${i + 1} in the conversation`;
  }

  // ---------------------------------------------------------------------------------------------
  // Sending
  // ---------------------------------------------------------------------------------------------

  async function buildContent(text) {
    const content = [];
    const sources = [];
    const frames = framesRequested();
    for (const part of state.parts) {
      if (part.kind === "text") {
        if (!part.text) continue;
        content.push({ type: "text", text: part.text });
      } else {
        let urls;
        try {
          urls = await Promise.all(part.files.map((f) => readDataUrl(f, part.kind === "video" ? "video" : "image")));
        } catch (e) {
          e.part = part;
          throw e;
        }
        if (part.kind === "image") content.push({ type: "image_url", image_url: { url: urls[0] } });
        else if (part.kind === "video") {
          const video = { url: urls[0] };
          if (frames !== null) video.num_frames = frames;
          content.push({ type: "video_url", video_url: video });
        } else {
          const scene = { urls };
          if (part.labels.some((l) => l.trim())) scene.labels = part.labels.map((l) => l.trim());
          content.push({ type: "scene_views", scene_views: scene });
        }
      }
      sources.push(part);
    }
    if (text) {
      content.push({ type: "text", text });
      sources.push("message");
    }
    return { content, sources };
  }

  function numberField(id) {
    const v = $(id).value.trim();
    return v === "" ? null : Number(v);
  }

  function visualCount(messages) {
    let n = 0;
    for (const m of messages) {
      for (const p of Array.isArray(m.content) ? m.content : []) {
        if (p.type === "image_url") n += 1;
        else if (p.type === "scene_views") n += p.scene_views.urls.length;
        else if (p.type === "video_url") n += p.video_url.num_frames || SERVER_DEFAULT_FRAMES;
      }
    }
    return n;
  }

  function userTurnElement(content, parts) {
    const li = el("li", { class: "turn user" }, el("p", { class: "who", text: "You" }));
    const media = el("ul", { class: "media", "aria-label": "Attached media" });
    const partEls = [];
    content.forEach((c, j) => {
      const part = parts[j];
      if (c.type === "text") {
        const p = el("p", { class: "text", text: c.text });
        partEls.push(p);
        li.append(p);
        return;
      }
      const item = el("li", { title: part.files.map((f) => f.name).join(", ") });
      part.files.forEach((f, k) => item.append(thumb(part.thumbs[k], `${part.kind === "scene" ? "Scene view" : part.kind === "video" ? "Video" : "Image"} ${f.name}`)));
      partEls.push(item);
      media.append(item);
    });
    if (media.childElementCount) li.insertBefore(media, li.children[1]);
    return { li, partEls };
  }

  function usageText(usage, messages, timing) {
    const details = usage.prompt_tokens_details || {};
    const fromServer = Number.isInteger(details.image_tokens);
    const visual = fromServer ? details.image_tokens : visualCount(messages) * TOKENS_PER_IMAGE;
    const text = Number.isInteger(details.text_tokens) ? details.text_tokens : usage.prompt_tokens - visual;
    const items = [
      `Visual tokens ${fmt(visual)} (${fmt(visual / TOKENS_PER_IMAGE)} × ${TOKENS_PER_IMAGE})${fromServer ? "" : " (estimated: the server did not report them)"}`,
      `text tokens ${fmt(text)}`,
      `output tokens ${fmt(usage.completion_tokens)}`,
    ];
    if (timing.ttft !== null) items.push(`time to first token ${(timing.ttft / 1000).toFixed(2)} s`);
    if (timing.rate !== null) items.push(`${timing.rate.toFixed(1)} tokens/s`);
    return { text: items.join(" · "), visual, textTokens: text, fromServer };
  }

  function setBusy(busy) {
    state.busy = busy;
    $("send").disabled = busy;
    $("stop").disabled = !busy;
    $("status").textContent = busy ? "Generating…" : "";
  }

  async function send(event) {
    event.preventDefault();
    if (state.busy) return;
    clearErrors();
    const text = $("message").value;
    if (!state.parts.length && !text.trim()) {
      showFieldError("message", "Type a message or add a part first.");
      $("message").focus();
      return;
    }
    setBusy(true);
    let built;
    try {
      built = await buildContent(text.trim() ? text : "");
    } catch (e) {
      if (e.part) e.part.error = e.message;
      renderParts();
      showFormError(e.message);
      setBusy(false);
      return;
    }
    const { content, sources } = built;
    const userMessage = { role: "user", content };
    const messages = [...state.conversation.map(({ role, content }) => ({ role, content })), userMessage];
    const body = {
      messages,
      stream: true,
      stream_options: { include_usage: true },
      image_placement: $("image-placement").value,
    };
    const maxTokens = numberField("max-tokens");
    if (maxTokens !== null) body.max_tokens = maxTokens;
    const temperature = numberField("temperature");
    if (temperature !== null) body.temperature = temperature;

    const sentParts = [...state.parts];
    const userEl = userTurnElement(content, sources.map((s) => (s === "message" ? null : s)));
    const answerText = el("p", { class: "text", "aria-live": "off" });
    const usageLine = el("p", { class: "usage", role: "status" });
    const assistantEl = el("li", { class: "turn assistant", "aria-busy": "true" }, el("p", { class: "who", text: "Assistant" }), answerText, usageLine);
    $("conversation").append(userEl.li, assistantEl);
    $("conversation-empty").hidden = true;

    const controller = new AbortController();
    state.controller = controller;
    const start = performance.now();
    let first = null;
    let last = null;
    let usage = null;
    let answer = "";
    let failure = null;
    try {
      const resp = await fetch("/v1/chat/completions", {
        method: "POST",
        headers: headers(true),
        body: JSON.stringify(body),
        signal: controller.signal,
      });
      if (!resp.ok) throw await errorFrom(resp);
      for await (const chunk of sseEvents(resp.body)) {
        if (chunk.error) throw new ApiError(0, chunk.error);
        const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
        if (delta && delta.content) {
          const now = performance.now();
          if (first === null) first = now;
          last = now;
          answer += delta.content;
          answerText.textContent = answer;
        }
        if (chunk.usage) usage = chunk.usage;
      }
    } catch (err) {
      failure = err;
    }
    state.controller = null;
    assistantEl.removeAttribute("aria-busy");
    const stopped = failure && failure.name === "AbortError";

    if (failure && !stopped) {
      // Nothing of this turn joins the conversation: fix the part and send again.
      userEl.li.remove();
      assistantEl.remove();
      $("conversation-empty").hidden = state.conversation.length > 0;
      if (failure instanceof ApiError) showApiError(failure, sources);
      else showFormError(`The request failed: ${failure.message}`);
      setBusy(false);
      return;
    }

    state.conversation.push({ role: "user", content, el: userEl.li, partEls: userEl.partEls });
    state.conversation.push({ role: "assistant", content: answer, el: assistantEl, partEls: [] });
    if (stopped) {
      usageLine.textContent = "Stopped.";
    } else if (usage) {
      const timing = {
        ttft: first === null ? null : first - start,
        rate: usage.completion_tokens > 1 && last > first ? ((usage.completion_tokens - 1) * 1000) / (last - first) : null,
      };
      const u = usageText(usage, messages, timing);
      usageLine.textContent = u.text;
      usageLine.dataset.visualTokens = String(u.visual);
      usageLine.dataset.textTokens = String(u.textTokens);
      usageLine.dataset.completionTokens = String(usage.completion_tokens);
      usageLine.dataset.source = u.fromServer ? "server" : "estimate";
    }
    if (!answer) answerText.textContent = "(empty answer)";
    state.parts = state.parts.filter((p) => !sentParts.includes(p));
    $("message").value = "";
    renderParts();
    setBusy(false);
    $("message").focus();
  }

  function newChat() {
    if (state.controller) state.controller.abort();
    state.conversation = [];
    state.parts = [];
    for (const url of state.objectUrls) URL.revokeObjectURL(url);
    state.objectUrls = [];
    $("conversation").replaceChildren();
    $("conversation-empty").hidden = false;
    $("message").value = "";
    clearErrors();
    $("message").focus();
  }

  // ---------------------------------------------------------------------------------------------
  // Wiring
  // ---------------------------------------------------------------------------------------------

  function dropZone(zone, onFiles) {
    zone.addEventListener("dragover", (ev) => {
      ev.preventDefault();
      zone.classList.add("over");
    });
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", (ev) => {
      ev.preventDefault();
      zone.classList.remove("over");
      if (ev.dataTransfer && ev.dataTransfer.files.length) onFiles([...ev.dataTransfer.files]);
    });
  }

  function picker(buttonId, inputId, onFiles) {
    const input = $(inputId);
    $(buttonId).addEventListener("click", () => input.click());
    input.addEventListener("change", () => {
      if (input.files.length) onFiles([...input.files]);
      input.value = "";
    });
  }

  function init() {
    picker("add-images", "image-input", addFiles);
    picker("add-videos", "video-input", addFiles);
    picker("add-scene", "scene-input", addScene);
    $("add-text").addEventListener("click", addText);
    dropZone($("drop-media"), addFiles);
    dropZone($("drop-scene"), addScene);
    // A drop anywhere else must not make the browser navigate away to the file.
    window.addEventListener("dragover", (ev) => ev.preventDefault());
    window.addEventListener("drop", (ev) => ev.preventDefault());
    $("composer").addEventListener("submit", send);
    $("stop").addEventListener("click", () => state.controller && state.controller.abort());
    $("new-chat").addEventListener("click", newChat);
    $("num-frames").addEventListener("input", () => renderParts());
    $("message").addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) {
        ev.preventDefault();
        $("composer").requestSubmit();
      }
    });
    // An error next to a field goes away once the field is edited.
    for (const id of ["message", "max-tokens", "temperature", "image-placement", "num-frames"]) {
      $(id).addEventListener("input", () => {
        $(id).removeAttribute("aria-invalid");
        $(`${id}-error`).hidden = true;
      });
    }
    const key = $("api-key");
    key.addEventListener("input", () => { state.apiKey = key.value.trim(); });
    key.addEventListener("change", loadModel);
    loadModel();
    document.body.dataset.ready = "true";
  }

  init();
})();
