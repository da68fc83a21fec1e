# Type stub for the cffi-compiled core (csrc/). Its functions are declared in
# csrc/*.h; the binding module is the only place that calls them.
from typing import Any

ffi: Any
lib: Any
