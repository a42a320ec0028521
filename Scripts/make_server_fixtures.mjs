// Captures the /predict requests immich's server sends, byte for byte, for the CLIPServer tests.
//
// immich's server (server/src/repositories/machine-learning.repository.ts, getFormData and predict) builds a
// FormData — `entries` as JSON.stringify of the request config, then `image` as a Blob of the file's bytes or
// `text` — and POSTs it with Node's fetch. This script does the same with the same Node APIs against a loopback
// server that records what arrives (Content-Type with its boundary, and the body).
//
//   node Scripts/make_server_fixtures.mjs    (writes Tests/CLIPServerTests/Fixtures/immich_*.{body,content-type})
import { createServer } from "node:http";
import { readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const out = join(root, "Tests/CLIPServerTests/Fixtures");

const captured = [];
const server = createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    captured.push({ contentType: req.headers["content-type"], body: Buffer.concat(chunks) });
    res.writeHead(200, { "content-type": "application/json" });
    res.end("{}");
  });
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const url = `http://127.0.0.1:${server.address().port}`;

// As MachineLearningRepository.getFormData and predict do.
async function predict(payload, config) {
  const formData = new FormData();
  formData.append("entries", JSON.stringify(config));
  if ("imagePath" in payload) {
    const fileBuffer = await readFile(payload.imagePath);
    formData.append("image", new Blob([new Uint8Array(fileBuffer)]));
  } else {
    formData.append("text", payload.text);
  }
  const response = await fetch(new URL("/predict", url), { method: "POST", body: formData });
  await response.json();
}

// encodeImage and encodeText, with immich's default CLIP model name.
const modelName = "ViT-B-32__openai";
await predict({ imagePath: join(root, "Tests/CLIPImageTests/Fixtures/images/jpeg_progressive_mid.jpg") }, { clip: { visual: { modelName } } });
await predict({ text: "a blue star" }, { clip: { textual: { modelName, options: { language: "en" } } } });
server.close();

for (const [i, name] of ["immich_visual", "immich_textual"].entries()) {
  await writeFile(join(out, `${name}.body`), captured[i].body);
  await writeFile(join(out, `${name}.content-type`), captured[i].contentType);
}
console.log(`wrote ${captured.length} requests; Node ${process.version}`);
