import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { CartProvider } from "@cartsync/react";
import App from "./App.jsx";

// Local-only here; give `endpoint` (the sync server's URL) to sync across devices.
createRoot(document.getElementById("root")).render(
  <StrictMode>
    <CartProvider options={{ storageKey: "react-example" }}>
      <App />
    </CartProvider>
  </StrictMode>,
);
