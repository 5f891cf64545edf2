// The Node.js peer: the npm package `ws`, broadcasting the way its README shows.
"use strict";
const { WebSocketServer, WebSocket } = require("ws");
const { randomUUID } = require("crypto");

const args = process.argv.slice(2);
const port = Number(args[args.indexOf("--port") + 1]);
const stepIndex = args.indexOf("--step-seconds");
const step = stepIndex >= 0 ? Number(args[stepIndex + 1]) : 0.05;
const STATES = ["STARTING", "IN_PROGRESS", "ALMOST_DONE", "SUCCESS"];

let seq = 0, state = "IDLE", calculationId = null, changedAt = Date.now() / 1000, running = false;
const message = () => JSON.stringify({
  type: "state", state, calculation_id: calculationId, seq, changed_at: changedAt, step_seconds: step,
});
const hello = JSON.stringify({ type: "hello", protocol: 1, server: "node-ws", client_id: "x" });

const wss = new WebSocketServer({ host: "127.0.0.1", port, path: "/progress", backlog: 4096 });

function broadcast(data) {
  wss.clients.forEach((client) => {
    if (client.readyState === WebSocket.OPEN) client.send(data);
  });
}

function start() {
  if (running) return;
  running = true;
  calculationId = randomUUID().replace(/-/g, "").slice(0, 12);
  const startedMono = performance.now(), startedWall = Date.now() / 1000;
  STATES.forEach((name, index) => {
    const fire = () => {
      seq += 1; state = name; changedAt = startedWall + index * step;
      broadcast(message());
      if (name === "SUCCESS") running = false;
    };
    const delay = startedMono + index * step * 1000 - performance.now();
    if (delay <= 0) fire(); else setTimeout(fire, delay);
  });
}

wss.on("connection", (ws) => {
  ws.send(hello);
  ws.send(message());
  ws.on("message", (data) => {
    try { if (JSON.parse(data).action === "start") start(); } catch (e) { /* ignore */ }
  });
});
wss.on("listening", () => console.log("ready"));
