// Upload page: drag and drop onto the drop zone, add files over several picks
// or drops, list what will be sent, and show that the upload is under way.
// Without JavaScript the plain file input and form still work.
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  var input = document.getElementById("images");
  var zone = document.getElementById("dropzone");
  if (!form || !input || !zone) return;
  var chosen = document.getElementById("chosen");
  var list = document.getElementById("chosen-list");
  var summary = document.getElementById("chosen-summary");
  var kept = [];  // every file picked or dropped so far, in order
  var canAssign = typeof DataTransfer === "function";

  function size(bytes) {
    var units = ["bytes", "KB", "MB", "GB"], i = 0;
    while (bytes >= 1024 && i < units.length - 1) { bytes /= 1024; i++; }
    return (i ? bytes.toFixed(1) : bytes) + " " + units[i];
  }

  function key(file) { return file.name + "\u0000" + file.size + "\u0000" + file.lastModified; }

  function add(files) {
    var seen = {};
    kept.forEach(function (f) { seen[key(f)] = true; });
    Array.prototype.forEach.call(files, function (f) { if (!seen[key(f)]) { kept.push(f); seen[key(f)] = true; } });
    sync();
  }

  function sync() {
    if (canAssign) {
      var transfer = new DataTransfer();
      kept.forEach(function (f) { transfer.items.add(f); });
      input.files = transfer.files;
    }
    render();
  }

  function render() {
    var files = canAssign ? kept : Array.prototype.slice.call(input.files);
    chosen.hidden = files.length === 0;
    var total = files.reduce(function (sum, f) { return sum + f.size; }, 0);
    summary.textContent = files.length + (files.length === 1 ? " file" : " files") + " · " + size(total);
    list.textContent = "";
    files.slice(0, 200).forEach(function (f) {
      var li = document.createElement("li");
      var name = document.createElement("span");
      var bytes = document.createElement("span");
      name.textContent = f.name;
      bytes.textContent = size(f.size);
      li.append(name, bytes);
      list.append(li);
    });
    if (files.length > 200) {
      var more = document.createElement("li");
      more.textContent = "… and " + (files.length - 200) + " more";
      list.append(more);
    }
  }

  input.addEventListener("change", function () {
    if (canAssign) {
      var picked = Array.prototype.slice.call(input.files);
      add(picked);
    } else {
      render();
    }
  });

  ["dragenter", "dragover"].forEach(function (type) {
    zone.addEventListener(type, function (event) {
      event.preventDefault();
      zone.classList.add("dragging");
    });
  });
  ["dragleave", "dragend"].forEach(function (type) {
    zone.addEventListener(type, function () { zone.classList.remove("dragging"); });
  });
  zone.addEventListener("drop", function (event) {
    zone.classList.remove("dragging");
    if (!canAssign || !event.dataTransfer) return;  // the input takes the drop itself
    event.preventDefault();
    add(event.dataTransfer.files);
  });

  document.getElementById("chosen-clear").addEventListener("click", function () {
    kept = [];
    input.value = "";
    render();
  });

  form.addEventListener("submit", function () {
    var button = document.getElementById("submit");
    button.disabled = true;
    button.textContent = "Uploading…";
    document.getElementById("uploading").hidden = false;
  });
})();
