// JSX without a plugin: Vite's own transform, with React's automatic runtime.
export default {
  oxc: { jsx: { runtime: "automatic" } },
};
