"""ipywidgets classroom demos, one module per demo.

Each demo is a function returning a widget; its computation is a separate, testable function
(no browser needed), and drawing only renders what that function returns.
"""
