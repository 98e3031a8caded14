"""The application layer: what the command line (:mod:`centernet.cli`) and the Python facade
(:mod:`centernet.api`) both run. :mod:`.builders` turns a configuration into a task, a model and data;
:mod:`.runs` trains, evaluates, predicts and exports; :mod:`.demo` is ``centernet demo``. Nothing here names a
task."""
