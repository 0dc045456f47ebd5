// Serves the browser client (client/dist, built by scripts/setup.mjs) under the app's CSP:
// hashed assets with a year-long immutable cache, index.html never cached (it names the current
// assets), and index.html for every other page path so that the client's routes survive a reload.
// API, socket, health and asset paths are never answered with the page.
import fs from 'node:fs';
import path from 'node:path';
import express, { type RequestHandler, Router } from 'express';

/** client/dist from src/http (tests) and from dist/http (the compiled server) alike. */
export const CLIENT_DIST = path.resolve(__dirname, '..', '..', 'client', 'dist');

const NOT_PAGES = /^\/(api|socket\.io|healthz|readyz|assets)(\/|$)/;
const YEAR_SECONDS = 31_536_000;

export function clientRoutes(root: string = CLIENT_DIST): Router {
  const router = Router();
  const indexFile = path.join(root, 'index.html');
  // The patient's follow-up page is its own bundle (client/followup.html): no case UI in it.
  const followUpFile = path.join(root, 'followup.html');
  router.use(
    '/assets',
    express.static(path.join(root, 'assets'), {
      index: false,
      redirect: false,
      fallthrough: true,
      // File names carry a content hash: a changed file is a new URL.
      setHeaders: (res) => res.setHeader('Cache-Control', `public, max-age=${YEAR_SECONDS}, immutable`),
    }),
  );
  const page: RequestHandler = (req, res, next) => {
    if ((req.method !== 'GET' && req.method !== 'HEAD') || NOT_PAGES.test(req.path)) return next();
    // The client is built by the set-up step; a server started without it answers 404 as before.
    fs.promises.readFile(req.path === '/followup.html' ? followUpFile : indexFile).then(
      (html) => {
        res.setHeader('Cache-Control', 'no-store');
        res.type('html').send(html);
      },
      () => next(),
    );
  };
  router.use(page);
  return router;
}
