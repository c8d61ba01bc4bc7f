"""`pipeline test`: cases files and running them (cases), the model judge (judge), assertions (assertions),
record and replay of cassettes (cassette), the JUnit XML and JSON reports (junit).

May import: every layer up to runner.fake; never cli. Inside, one way: assertions <- judge <- cases <- junit;
cassette stands alone.
"""
