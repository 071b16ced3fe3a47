// The playground page: a drawing pad and an upload for the digits model, a review box for the
// sentiment model. It calls the public endpoints as any client does, and shows every error in
// words. The API key, when the service asks for one, lives in `apiKey` only: never stored.
"use strict";

const PEN_WIDTH = 18; // in canvas pixels (the canvas is 280x280), about an MNIST stroke
const TYPING_PAUSE_MS = 500; // predict a review once typing pauses this long
const DRAWING_INTERVAL_MS = 300; // while drawing, predict at most this often
const MODELS_RETRY_MS = 5000; // while a model is not served, ask /v1/models again this often

// What the page tells a person about an answer (the API's answers are the same for everyone).
// Chosen from data, with the method and the figures in docs/api.md ("How sure the models are");
// tests/api/test_confidence.py checks them against the data again.
const MIN_INK = 0.01; // less ink than this share of the pad: a dot or a dash, not a digit
const SURE_DIGIT = 0.98; // a lower top probability is a guess: 9 in 10 misread digits are below
const MIXED_WITHIN = 0.17; // a score this close to 0.5 is mixed: half the misread reviews are

let apiKey = "";

// ---- calling the API -------------------------------------------------------------------------

class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

async function callApi(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (apiKey) headers.set("Authorization", `Bearer ${apiKey}`);
  let response;
  try {
    response = await fetch(path, { ...options, headers });
  } catch (error) {
    throw new ApiError(`Could not reach the service (${error.message}). Is it still running?`, 0);
  }
  const text = await response.text();
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    body = null;
  }
  if (!response.ok) {
    throw new ApiError(errorMessage(response, body, text), response.status);
  }
  if (body === null) {
    throw new ApiError(`The service answered ${response.status} with something that is not JSON.`, response.status);
  }
  return body;
}

function errorMessage(response, body, text) {
  // The service's errors are {"error": {"code", "message"}}; TF Serving's are {"error": "..."}.
  const error = body && body.error;
  const message = (error && (error.message || (typeof error === "string" ? error : ""))) ||
    text.trim().slice(0, 300) || response.statusText || "no message";
  const code = error && error.code ? ` ${error.code}` : "";
  if (response.status === 401) {
    showKeyForm();
    return `The service needs a valid API key (401${code}): ${message}. Enter it above.`;
  }
  return `The service refused this (${response.status}${code}): ${message}`;
}

function showError(element, error) {
  element.textContent = error instanceof ApiError || error instanceof Error
    ? error.message
    : String(error);
  element.hidden = false;
}

function clearError(element) {
  element.textContent = "";
  element.hidden = true;
}

// ---- models and the API key ------------------------------------------------------------------

const modelsLine = document.getElementById("models");
const keyForm = document.getElementById("api-key");
const keyInput = document.getElementById("api-key-input");

function showKeyForm() {
  keyForm.hidden = false;
}

let modelsTimer = null;

async function loadModels() {
  clearTimeout(modelsTimer);
  try {
    const body = await callApi("/v1/models");
    const available = body.models.filter((model) => model.version !== null);
    const parts = available.map((model) => {
      const device = String(model.device || "").replace(/^\//, "");
      // The labels naming the version that answers, e.g. "sentiment v2 (stable)".
      const labels = Object.entries(model.labels || {})
        .filter(([, version]) => version === model.version)
        .map(([label]) => label);
      const named = labels.length ? ` (${labels.join(", ")})` : "";
      return `${model.name} v${model.version}${named} on ${device}`;
    });
    modelsLine.textContent = parts.length ? `Serving ${parts.join(", ")}.` : "No models are served.";
    for (const name of Object.keys(panels)) {
      const model = body.models.find((each) => each.name === name);
      if (!model) {
        setServed(name, `this service does not serve a model named ${name} (its model folder has no ${name}/)`);
      } else if (model.version === null) {
        const state = model.states && model.states.length ? model.states[0].state : "none";
        setServed(name, `the ${name} model has no available version yet (${state})`);
      } else {
        setServed(name, null);
      }
    }
  } catch (error) {
    modelsLine.textContent = error.message;
  }
  // A model may appear while the page is open (a new version folder): look again meanwhile.
  if (Object.values(panels).some((panel) => panel.unavailable)) {
    modelsTimer = setTimeout(loadModels, MODELS_RETRY_MS);
  }
}

// ---- a panel whose model is not served -------------------------------------------------------

const panels = {
  digits: { section: document.getElementById("digits-panel"), unavailable: false },
  sentiment: { section: document.getElementById("sentiment-panel"), unavailable: false },
};

// Greys the panel out and says why (null: served, the panel works again).
function setServed(name, reason) {
  const panel = panels[name];
  panel.unavailable = reason !== null;
  panel.section.classList.toggle("unavailable", panel.unavailable);
  panel.section.setAttribute("aria-disabled", String(panel.unavailable));
  panel.section.dataset.served = String(!panel.unavailable);
  for (const control of panel.section.querySelectorAll("button, input, textarea")) {
    control.disabled = panel.unavailable;
  }
  const note = panel.section.querySelector(".unavailable-note");
  note.textContent = panel.unavailable
    ? `Not available: ${reason}. The rest of the page works as usual.`
    : "";
  note.hidden = !panel.unavailable;
}

// A 404 from a model's own route: the model has gone since the page asked /v1/models. The
// panel says so until /v1/models lists the model again.
function notServed(name, error) {
  if (!(error instanceof ApiError && error.status === 404)) return false;
  setServed(name, error.message.replace(/^The service refused this \(404 not_found\): /, ""));
  clearTimeout(modelsTimer);
  modelsTimer = setTimeout(loadModels, MODELS_RETRY_MS);
  return true;
}

keyForm.addEventListener("submit", (event) => {
  event.preventDefault();
  apiKey = keyInput.value.trim();
  loadModels();
});

// ---- the drawing pad -------------------------------------------------------------------------

const pad = document.getElementById("pad");
const context = pad.getContext("2d");
const digitResult = document.getElementById("digit-result");
const digitVerdict = digitResult.querySelector(".verdict");
const digitBars = digitResult.querySelector(".bars");
const digitError = document.getElementById("digit-error");
let hasInk = false;
let drawing = false;
let last = null;
let lastDrawingPrediction = 0;

function clearPad() {
  context.fillStyle = "#ffffff";
  context.fillRect(0, 0, pad.width, pad.height);
  hasInk = false;
}

// The share of the pad that is ink (dark pixels), 0 to 1.
function inkShare() {
  const pixels = context.getImageData(0, 0, pad.width, pad.height).data;
  let dark = 0;
  for (let index = 0; index < pixels.length; index += 4) {
    if (pixels[index] < 128) dark += 1;
  }
  return dark / (pad.width * pad.height);
}

// Too little on the pad to be a digit (a dot, a short dash): say so instead of sending it.
function nearlyEmpty() {
  const ink = inkShare();
  pad.dataset.ink = ink.toFixed(4);
  return ink < MIN_INK;
}

function refuseNearlyEmpty() {
  digitSequence += 1; // an answer on its way is for a drawing that is not worth reading
  clearError(digitError);
  showDigitPlaceholder(
    "Draw a digit first: there is too little on the pad to read (a dot or a short stroke).",
  );
  digitResult.dataset.refused = "nearly-empty";
}

function padPoint(event) {
  const box = pad.getBoundingClientRect();
  return {
    x: ((event.clientX - box.left) * pad.width) / box.width,
    y: ((event.clientY - box.top) * pad.height) / box.height,
  };
}

function strokeTo(point) {
  context.strokeStyle = "#000000";
  context.fillStyle = "#000000";
  context.lineWidth = PEN_WIDTH;
  context.lineCap = "round";
  context.lineJoin = "round";
  if (last) {
    context.beginPath();
    context.moveTo(last.x, last.y);
    context.lineTo(point.x, point.y);
    context.stroke();
  } else {
    context.beginPath();
    context.arc(point.x, point.y, PEN_WIDTH / 2, 0, 2 * Math.PI);
    context.fill();
  }
  last = point;
  hasInk = true;
}

pad.addEventListener("pointerdown", (event) => {
  if (event.button !== 0) return;
  event.preventDefault();
  pad.setPointerCapture(event.pointerId);
  drawing = true;
  last = null;
  strokeTo(padPoint(event));
});

pad.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const each of events.length ? events : [event]) strokeTo(padPoint(each));
  const now = performance.now();
  if (now - lastDrawingPrediction > DRAWING_INTERVAL_MS) {
    lastDrawingPrediction = now;
    predictDrawing();
  }
});

function endStroke() {
  if (!drawing) return;
  drawing = false;
  last = null;
  predictDrawing();
}

pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

document.getElementById("clear").addEventListener("click", () => {
  clearPad();
  digitAgain = false;
  digitSequence += 1; // an answer still on its way is for a drawing that is gone
  clearError(digitError);
  showDigitPlaceholder("Nothing read yet.");
});

document.getElementById("predict-digit").addEventListener("click", () => {
  if (!hasInk) {
    showError(digitError, "The pad is empty: draw a digit on it first.");
    return;
  }
  predictDrawing();
});


function padImage() {
  return new Promise((resolve, reject) => {
    pad.toBlob((blob) => (blob ? resolve(blob) : reject(new Error("the pad could not be saved as PNG"))), "image/png");
  });
}

// One request at a time: a prediction asked for while one is on its way runs when it is back,
// with whatever is on the pad then.
let digitBusy = false;
let digitAgain = false;

async function predictDrawing() {
  if (!hasInk) return;
  if (nearlyEmpty()) {
    if (!drawing) refuseNearlyEmpty(); // while the pen is down, the stroke may yet grow
    return;
  }
  if (digitBusy) {
    digitAgain = true;
    markDigitState();
    return;
  }
  digitBusy = true;
  digitRequests += 1; // from now, not once the PNG is made
  markDigitState();
  try {
    await predictDigit(await padImage(), "drawing.png", "the drawing");
  } catch (error) {
    showError(digitError, error); // the pad could not be read: predictDigit shows the rest
  } finally {
    digitBusy = false;
    digitRequests -= 1;
    if (digitAgain) {
      digitAgain = false;
      predictDrawing();
    }
    markDigitState();
  }
}

// data-state on the result is "busy" while a digit request is on its way or due, else "idle".
let digitRequests = 0;

function markDigitState() {
  digitResult.dataset.state = digitRequests > 0 || digitAgain ? "busy" : "idle";
}

// The result shows the latest drawing or upload: an answer to an earlier one (or to a drawing
// cleared since) arrives to nothing.
let digitSequence = 0;

async function predictDigit(file, name, source) {
  const form = new FormData();
  form.append("file", file, name);
  const sequence = ++digitSequence;
  digitRequests += 1;
  markDigitState();
  try {
    const body = await callApi("/v1/digits/predict", { method: "POST", body: form });
    if (sequence !== digitSequence) return;
    clearError(digitError);
    showDigit(body.predictions[0], source, body);
  } catch (error) {
    if (sequence === digitSequence && !notServed("digits", error)) showError(digitError, error);
  } finally {
    digitRequests -= 1;
    markDigitState();
  }
}

function showDigitPlaceholder(text) {
  digitVerdict.textContent = text;
  digitBars.replaceChildren();
  digitBars.hidden = true;
  delete digitResult.dataset.digit;
  delete digitResult.dataset.confidence;
  delete digitResult.dataset.refused;
}

function showDigit(prediction, source, body) {
  const probabilities = prediction.probabilities;
  const digit = prediction.digit;
  const sure = probabilities[digit] >= SURE_DIGIT;
  const strong = Object.assign(document.createElement("strong"), { textContent: String(digit) });
  if (sure) {
    digitVerdict.replaceChildren(
      `The model reads ${source} as `,
      strong,
      ` (${percent(probabilities[digit])} sure, ${body.model} v${body.version}).`,
    );
  } else {
    digitVerdict.replaceChildren(
      "Not sure: the model's best guess for ",
      `${source} is `,
      strong,
      `, at only ${percent(probabilities[digit])} (${body.model} v${body.version}). ` +
        "It may not be a digit, or not one the model knows well: try drawing it larger and plainer.",
    );
  }
  digitResult.dataset.confidence = sure ? "high" : "low";
  delete digitResult.dataset.refused;
  const rows = probabilities.map((p, index) => {
    const row = document.createElement("li");
    if (index === digit) row.className = "top";
    const label = Object.assign(document.createElement("span"), { textContent: String(index) });
    const track = Object.assign(document.createElement("span"), { className: "track" });
    const fill = Object.assign(document.createElement("span"), { className: "fill" });
    fill.style.setProperty("--p", String(p));
    fill.setAttribute("aria-hidden", "true");
    track.append(fill);
    const value = Object.assign(document.createElement("span"), { className: "value", textContent: percent(p) });
    row.append(label, track, value);
    return row;
  });
  digitBars.replaceChildren(...rows);
  digitBars.hidden = false;
  digitResult.dataset.digit = String(digit);
}

function percent(p) {
  return p > 0 && p < 0.0005 ? "<0.1%" : `${(100 * p).toFixed(1)}%`;
}

// ---- uploads ---------------------------------------------------------------------------------

const fileInput = document.getElementById("image-file");
const drop = document.getElementById("drop");
const preview = document.getElementById("upload-preview");
let previewUrl = null;

// The first bytes of the formats the service reads (docs/api.md): a file that starts otherwise
// is refused here, in words, without a request the service would refuse anyway.
const IMAGE_SIGNATURES = [
  [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], // PNG
  [0xff, 0xd8, 0xff], // JPEG
  [0x47, 0x49, 0x46, 0x38], // GIF
  [0x42, 0x4d], // BMP
  [0x49, 0x49, 0x2a, 0x00], // TIFF, little-endian
  [0x4d, 0x4d, 0x00, 0x2a], // TIFF, big-endian
];

async function looksLikeAnImage(file) {
  const head = new Uint8Array(await file.slice(0, 12).arrayBuffer());
  const starts = (signature) => signature.every((byte, index) => head[index] === byte);
  const webp = starts([0x52, 0x49, 0x46, 0x46]) &&
    String.fromCharCode(...head.slice(8, 12)) === "WEBP";
  return webp || IMAGE_SIGNATURES.some(starts);
}

async function predictUpload(file) {
  if (!file) return;
  if (previewUrl) URL.revokeObjectURL(previewUrl);
  previewUrl = null;
  preview.hidden = true;
  let image;
  try {
    image = await looksLikeAnImage(file);
  } catch (error) {
    showError(digitError, `${file.name} could not be read (${error.message}).`);
    return;
  }
  if (!image) {
    digitSequence += 1; // the result above is no longer the latest
    showDigitPlaceholder("Nothing read yet.");
    showError(digitError, `${file.name} is not an image the service reads: choose a PNG, JPEG, BMP, GIF, TIFF or WebP file.`);
    return;
  }
  if (file.type.startsWith("image/")) {
    previewUrl = URL.createObjectURL(file);
    preview.src = previewUrl;
    preview.alt = `The uploaded image ${file.name}`;
    preview.hidden = false;
  }
  predictDigit(file, file.name, `${file.name}`);
}

fileInput.addEventListener("change", () => {
  predictUpload(fileInput.files[0]);
  fileInput.value = ""; // so that choosing the same file again predicts again
});

for (const type of ["dragenter", "dragover"]) {
  drop.addEventListener(type, (event) => {
    event.preventDefault();
    drop.classList.add("dragging");
  });
}
for (const type of ["dragleave", "drop"]) {
  drop.addEventListener(type, () => drop.classList.remove("dragging"));
}
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  predictUpload(event.dataTransfer.files[0]);
});

// ---- reviews ---------------------------------------------------------------------------------

const review = document.getElementById("review");
const sentimentResult = document.getElementById("sentiment-result");
const sentimentVerdict = sentimentResult.querySelector(".verdict");
const sentimentMeter = sentimentResult.querySelector(".meter");
const sentimentFill = sentimentResult.querySelector(".meter-fill");
const sentimentError = document.getElementById("sentiment-error");
let typingTimer = null;
let reviewSequence = 0;

async function predictSentiment({ fromButton }) {
  const text = review.value;
  if (!text.trim()) {
    if (fromButton) showError(sentimentError, "The review is empty: write a sentence or two first.");
    return;
  }
  const sequence = ++reviewSequence;
  sentimentResult.dataset.state = "busy";
  try {
    const body = await callApi("/v1/sentiment/predict", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ reviews: [text] }),
    });
    if (sequence !== reviewSequence) return; // a later request has been sent: its answer counts
    clearError(sentimentError);
    const { label, score } = body.predictions[0];
    const mixed = Math.abs(score - 0.5) < MIXED_WITHIN;
    const verdict = mixed ? "mixed" : label;
    sentimentVerdict.replaceChildren(
      "The model finds this review ",
      Object.assign(document.createElement("strong"), { textContent: verdict, className: `label-${verdict}` }),
      mixed
        ? `: it leans ${label}, but not clearly (score ${score.toFixed(3)}, ${body.model} v${body.version}).`
        : ` (score ${score.toFixed(3)}, ${body.model} v${body.version}).`,
    );
    sentimentFill.style.setProperty("--p", String(score));
    sentimentMeter.hidden = false;
    sentimentMeter.title = `score ${score.toFixed(3)}: the probability that it is positive`;
    sentimentResult.dataset.label = label;
    sentimentResult.dataset.verdict = verdict;
  } catch (error) {
    if (sequence === reviewSequence && !notServed("sentiment", error)) showError(sentimentError, error);
  } finally {
    if (sequence === reviewSequence) sentimentResult.dataset.state = "idle";
  }
}

function showSentimentPlaceholder() {
  reviewSequence += 1; // an answer still on its way is for a text that is gone
  sentimentVerdict.textContent = "Nothing read yet.";
  sentimentMeter.hidden = true;
  delete sentimentResult.dataset.label;
  delete sentimentResult.dataset.verdict;
  sentimentResult.dataset.state = "idle";
  clearError(sentimentError);
}

review.addEventListener("input", () => {
  clearTimeout(typingTimer);
  if (!review.value.trim()) {
    showSentimentPlaceholder();
    return;
  }
  typingTimer = setTimeout(() => predictSentiment({ fromButton: false }), TYPING_PAUSE_MS);
});

review.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    clearTimeout(typingTimer);
    predictSentiment({ fromButton: true });
  }
});

document.getElementById("predict-sentiment").addEventListener("click", () => {
  clearTimeout(typingTimer);
  predictSentiment({ fromButton: true });
});

// ---- start -----------------------------------------------------------------------------------

sentimentMeter.style.setProperty("--mixed-low", String(0.5 - MIXED_WITHIN));
sentimentMeter.style.setProperty("--mixed-high", String(0.5 + MIXED_WITHIN));
clearPad();
loadModels();
