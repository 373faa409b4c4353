// The annotation page: show the crop the server asks for, send one label per key press.
// Key presses are queued, so fast typing is never lost: each one is sent after the previous
// answer has arrived, for the crop that answer showed.
"use strict";

let current = null; // the crop on screen: {id, index, file, digit}
let queue = Promise.resolve();
// This run's token, from the address the annotate stage printed: the server answers nothing
// without it (another web page cannot know it).
const token = new URLSearchParams(location.search).get("token") || "";

function show(state) {
  current = state.current;
  document.body.dataset.labelled = state.labelled;
  document.getElementById("progress").textContent =
    `${state.labelled} / ${state.total} labelled`;
  document.getElementById("labels-file").textContent = state.labels_file;
  const last = state.last;
  document.getElementById("last").textContent = last
    ? `last: ${last.file} digit ${last.digit + 1} → ${last.label}`
    : "";
  if (state.done) {
    document.body.classList.add("done");
    return;
  }
  document.body.classList.remove("done");
  const t = encodeURIComponent(token);
  document.getElementById("crop").src = `/crop/${current.index}.png?token=${t}`;
  document.getElementById("context").src = `/context/${current.index}.png?token=${t}`;
  document.getElementById("crop").dataset.id = current.id;
}

function say(text, isError) {
  const message = document.getElementById("message");
  message.textContent = text;
  message.className = isError ? "error" : "";
}

async function call(method, url, body) {
  let response;
  try {
    const post = method === "POST";
    response = await fetch(url, {
      method,
      headers: {
        "X-Annotate-Token": token,
        ...(post ? { "Content-Type": "application/json" } : {}),
      },
      body: post ? JSON.stringify(body || {}) : undefined,
    });
  } catch (err) {
    say("The annotation server is not reachable. Every label given so far is saved: " +
        "run the annotate stage again to continue.", true);
    throw err;
  }
  const state = await response.json();
  if (response.status === 409) {
    say("The page was behind the server; it now shows the crop to label.", false);
  } else if (!response.ok) {
    say(state.error || `error ${response.status}`, true);
  } else {
    say("", false);
  }
  show(state);
  return state;
}

function handle(event) {
  if (event.ctrlKey || event.metaKey || event.altKey) {
    return;
  }
  let action = null;
  if (/^[0-9]$/.test(event.key)) {
    action = () => current && call("POST", "/api/label", { id: current.id, label: event.key });
  } else if (event.key === " " || event.key === "`") {
    action = () => current && call("POST", "/api/label", { id: current.id, label: "skip" });
  } else if (event.key === "Backspace") {
    action = () => call("POST", "/api/undo").then((state) => {
      if (state.undone) {
        say(`undone: ${state.undone.file} digit ${state.undone.digit + 1} ` +
            `(was ${state.undone.label})`, false);
      }
    });
  }
  if (action) {
    event.preventDefault();
    queue = queue.then(action).catch(() => {});
  }
}

document.addEventListener("keydown", handle);
queue = queue.then(() => call("GET", "/api/state")).catch(() => {});
