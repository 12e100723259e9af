// MathJax 3 settings for pymdownx.arithmatex in generic mode. Arithmatex leaves inline math as
// <span class="arithmatex">\( ... \)</span> and display math as <div class="arithmatex">\[ ... \]</div>,
// so MathJax is told to look only inside elements of that class.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"]],
    displayMath: [["\\[", "\\]"]],
    processEscapes: true,
    processEnvironments: true,
  },
  options: {
    ignoreHtmlClass: ".*|",        // every element (also those without a class) is skipped ...
    processHtmlClass: "arithmatex", // ... except the ones arithmatex produced
  },
};

// mkdocs-material announces every page it shows through the observable `document$`
// (also without instant navigation); typeset the math of each new page.
if (typeof document$ !== "undefined") {
  document$.subscribe(() => {
    if (window.MathJax && window.MathJax.typesetPromise) {
      window.MathJax.typesetClear();
      window.MathJax.texReset();
      window.MathJax.typesetPromise();
    }
  });
}
