"""The grammar of the declarative provisioning expression language (Lark, LALR).

All binary operators have the same priority and group left to right (``3+2*5`` is 25), so an expression is a flat
sequence ``operand (operator operand)*``; parentheses change the order. ``-`` also negates an operand (``-1``).
The grammar is a Python string, not a ``.lark`` file, so the package needs no package-data configuration.
"""

from __future__ import annotations

GRAMMAR = r"""
start: expr

expr: unary (binop unary)*

binop: OP | MINUS

?unary: MINUS unary          -> neg
      | atom

?atom: STRING                -> string
     | NUMBER                -> number
     | HEX                   -> hex
     | ATTRIBUTE             -> attribute
     | PARAMETER             -> parameter
     | VARIABLE              -> variable
     | NAME "(" [args] ")"   -> call
     | NAME                  -> name
     | "(" expr ")"

args: expr ("," expr)*

OP: "<=" | ">=" | "<>" | "&&" | "||" | "<" | ">" | "=" | "+" | "*" | "/" | "&"
MINUS: "-"
STRING: /"(?:[^"]|"")*"/
NUMBER.2: /[0-9]+(\.[0-9]+)?/
HEX.3: /&H[0-9A-Fa-f]+/i
ATTRIBUTE: /\[[^\[\]]+\]/
PARAMETER: /%[^%\s]+%/
VARIABLE: /\$[A-Za-z_][A-Za-z0-9_]*/
NAME: /[A-Za-z_][A-Za-z0-9_]*/

%ignore /\s+/
"""
