/* The finder's place box (streamlit-searchbox 0.1.24: react-select in a frame of the app's own origin),
   mended from the page, as the component has no option for either:
   - its input is named (the component draws its label as a text above, tied to nothing);
   - Enter picks the text typed, not the suggestion before it. The box sends the text to the server only
     after a pause in typing (its debounce), and Enter picks among the suggestions on screen, whose first
     is the text they were made for (ui/finder_ui.place_choices): an Enter pressed sooner waits for the
     suggestions of the text typed, then goes on. */
(() => {
  window.carburoamPlaceLabel = %(label)s;  // the page's language: set again at every run of the page
  if (window.carburoamPlaceBox) return;
  window.carburoamPlaceBox = true;
  const FRAME = 'iframe[title="streamlit_searchbox.searchbox"]';
  const MAX_CHARS = %(max_chars)d;
  const WAIT_MS = %(wait_ms)d;

  const typed = input => input.value.split(/\s+/).filter(Boolean).join(" ").slice(0, MAX_CHARS);
  const answered = (doc, input) => {
    const first = doc.querySelector('[id$="-option-0"]');
    return first !== null && first.textContent === typed(input);
  };

  function mend(doc) {
    const input = doc.querySelector('input[role="combobox"]');
    if (input && input.getAttribute("aria-label") !== window.carburoamPlaceLabel) {
      input.setAttribute("aria-label", window.carburoamPlaceLabel);
    }
  }

  function holdEnter(doc) {
    doc.addEventListener("keydown", event => {
      const input = event.target;
      if (event.key !== "Enter" || event.isComposing || input.getAttribute?.("role") !== "combobox") return;
      if (!typed(input) || answered(doc, input)) return;
      event.preventDefault();
      event.stopPropagation();  // before react-select sees it: in the capture phase, on the document
      if (doc.carburoamEnterHeld) return;
      doc.carburoamEnterHeld = true;
      const release = () => {
        watch.disconnect();
        clearTimeout(giveUp);
        doc.carburoamEnterHeld = false;
      };
      const watch = new MutationObserver(() => {
        if (!answered(doc, input)) return;
        release();
        input.dispatchEvent(new KeyboardEvent("keydown", {key: "Enter", code: "Enter", keyCode: 13, bubbles: true}));
      });
      // An Enter held longer (no answer from the server) is dropped, and the next one is held again.
      const giveUp = setTimeout(release, WAIT_MS);
      watch.observe(doc.body, {childList: true, subtree: true, characterData: true});
    }, true);
  }

  function follow(frame) {
    const attach = () => {
      const doc = frame.contentDocument;
      if (!doc || !doc.body || doc.carburoamMended) return;
      doc.carburoamMended = true;
      holdEnter(doc);
      mend(doc);
      new MutationObserver(() => mend(doc)).observe(doc.body, {childList: true, subtree: true});
    };
    frame.addEventListener("load", attach);
    attach();
  }

  const seen = new WeakSet();
  const look = () => {
    for (const frame of document.querySelectorAll(FRAME)) {
      if (!seen.has(frame)) { seen.add(frame); follow(frame); }
      else if (frame.contentDocument?.body) mend(frame.contentDocument);
    }
  };
  new MutationObserver(look).observe(document.body, {childList: true, subtree: true});
  look();
})();
