"""Writes the hand-made VASP fixtures in this folder (run it here; the outputs are committed).

A 4-atom Cu2CN cell with a sheared lattice and *known* labels, laid out like a VASP 6
vasprun.xml (generator, incar, kpoints, parameters, atominfo, initialpos, one
<calculation> with SCF steps, finalpos):

* finished/      complete run; hpc_itc.json gives config_type ``cu_n_diamond_rattle``
* unconverged/   the SCF loop used all NELM = 6 steps
* truncated/     the finished file cut inside <calculation> (VASP killed)
* no_vasprun/    INCAR and OUTCAR only (VASP died before writing vasprun.xml)

Known values (what the reader must return, see tests/test_sample.py):
E_0 = -20.495 eV, E_free = -20.500 eV, forces below (eV/Å), stress below in kBar
as VASP prints it (positive = pressure), so REF_stress = -STRESS_KBAR / 1602.1766208.
"""

from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SYMBOLS = ["Cu", "Cu", "C", "N"]
LATTICE = np.array([[3.6, 0.0, 0.0], [0.4, 3.5, 0.0], [0.0, 0.3, 4.2]])
FRAC = np.array([[0.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.25, 0.25, 0.5], [0.75, 0.75, 0.5]])
FORCES = np.array([[0.1, -0.2, 0.3], [-0.1, 0.2, -0.3], [0.5, 0.0, 0.05], [-0.5, 0.0, -0.05]])
STRESS_KBAR = np.array([[50.0, 5.0, 2.0], [5.0, -20.0, -3.0], [2.0, -3.0, 10.0]])
E_FREE, E_0 = -20.500, -20.495


def _v(rows, fmt="{:16.8f}"):
    return "\n".join("    <v>" + "".join(fmt.format(x) for x in r) + " </v>" for r in np.atleast_2d(rows))


def _structure(name=None):
    tag = f' name="{name}"' if name else ""
    rec = np.linalg.inv(LATTICE).T
    return f""" <structure{tag} >
  <crystal>
   <varray name="basis" >
{_v(LATTICE)}
   </varray>
   <i name="volume">{abs(np.linalg.det(LATTICE)):16.8f} </i>
   <varray name="rec_basis" >
{_v(rec)}
   </varray>
  </crystal>
  <varray name="positions" >
{_v(FRAC)}
  </varray>
 </structure>"""


def _scstep(e_fr, e_0):
    return f"""  <scstep>
   <time name="total">    0.10    0.10</time>
   <energy>
    <i name="e_fr_energy">{e_fr:16.8f} </i>
    <i name="e_wo_entrp">{e_fr + 0.01:16.8f} </i>
    <i name="e_0_energy">{e_0:16.8f} </i>
   </energy>
  </scstep>"""


def vasprun(nelm=60, n_scf=5):
    scf = [_scstep(E_FREE + 1.5 / (k + 1) ** 3, E_0 + 1.5 / (k + 1) ** 3) for k in range(n_scf - 1)]
    scf.append(_scstep(E_FREE, E_0))
    atoms = "\n".join(f"    <rc><c>{s:2s}</c><c>{'   1' if s == 'Cu' else '   2' if s == 'C' else '   3'}</c></rc>" for s in SYMBOLS)
    return f"""<?xml version="1.0" encoding="ISO-8859-1"?>
<modeling>
 <generator>
  <i name="program" type="string">vasp </i>
  <i name="version" type="string">6.4.2  </i>
  <i name="subversion" type="string">hand-made fixture for hpc_itc tests </i>
  <i name="platform" type="string">LinuxIFC </i>
  <i name="date" type="string">2026 01 01 </i>
  <i name="time" type="string">00:00:00 </i>
 </generator>
 <incar>
  <i type="string" name="PREC">accurate</i>
  <i name="ENCUT">    600.00000000</i>
  <i type="string" name="GGA">PS</i>
  <i type="int" name="ISMEAR">     0</i>
  <i name="SIGMA">      0.05000000</i>
  <i name="EDIFF">      0.00000100</i>
  <i type="int" name="NELM">{nelm:6d}</i>
  <i type="int" name="NSW">     0</i>
  <i type="int" name="IBRION">    -1</i>
  <i type="int" name="ISIF">     2</i>
 </incar>
 <kpoints>
  <generation param="Gamma">
   <v type="int" name="divisions">       2        2        2 </v>
   <v name="usershift">      0.00000000       0.00000000       0.00000000 </v>
   <v name="genvec1">      0.50000000       0.00000000       0.00000000 </v>
   <v name="genvec2">      0.00000000       0.50000000       0.00000000 </v>
   <v name="genvec3">      0.00000000       0.00000000       0.50000000 </v>
   <v name="shift">      0.00000000       0.00000000       0.00000000 </v>
  </generation>
  <varray name="kpointlist" >
    <v>       0.00000000       0.00000000       0.00000000 </v>
    <v>       0.50000000       0.50000000       0.50000000 </v>
  </varray>
  <varray name="weights" >
    <v>       0.50000000 </v>
    <v>       0.50000000 </v>
  </varray>
 </kpoints>
 <parameters>
  <separator name="general" >
   <i type="string" name="SYSTEM">hpc_itc fixture</i>
  </separator>
  <separator name="electronic" >
   <i type="string" name="PREC">accurate</i>
   <i name="ENMAX">    600.00000000</i>
   <i name="EDIFF">      0.00000100</i>
   <i type="int" name="NBANDS">    24</i>
   <i name="NELECT">     27.00000000</i>
   <separator name="electronic smearing" >
    <i type="int" name="ISMEAR">     0</i>
    <i name="SIGMA">      0.05000000</i>
   </separator>
   <separator name="electronic spin" >
    <i type="int" name="ISPIN">     1</i>
    <i type="logical" name="LNONCOLLINEAR"> F  </i>
   </separator>
   <separator name="electronic convergence" >
    <i type="int" name="NELM">{nelm:6d}</i>
    <i type="int" name="NELMDL">    -5</i>
    <i type="int" name="NELMIN">     2</i>
   </separator>
  </separator>
  <separator name="ionic" >
   <i type="int" name="NSW">     0</i>
   <i type="int" name="IBRION">    -1</i>
   <i type="int" name="ISIF">     2</i>
   <i name="PSTRESS">      0.00000000</i>
  </separator>
 </parameters>
 <atominfo>
  <atoms>       4 </atoms>
  <types>       3 </types>
  <array name="atoms" >
   <dimension dim="1">ion</dimension>
   <field type="string">element</field>
   <field type="int">atomtype</field>
   <set>
{atoms}
   </set>
  </array>
  <array name="atomtypes" >
   <dimension dim="1">type</dimension>
   <field type="int">atomspertype</field>
   <field type="string">element</field>
   <field>mass</field>
   <field>valence</field>
   <field type="string">pseudopotential</field>
   <set>
    <rc><c>   2</c><c>Cu</c><c>     63.54600000</c><c>     17.00000000</c><c>  PAW_PBE Cu_pv 06Sep2000               </c></rc>
    <rc><c>   1</c><c>C </c><c>     12.01100000</c><c>      4.00000000</c><c>  PAW_PBE C 08Apr2002                   </c></rc>
    <rc><c>   1</c><c>N </c><c>     14.00100000</c><c>      5.00000000</c><c>  PAW_PBE N 08Apr2002                   </c></rc>
   </set>
  </array>
 </atominfo>
{_structure("initialpos")}
 <calculation>
{chr(10).join(scf)}
{_structure()}
  <varray name="forces" >
{_v(FORCES)}
  </varray>
  <varray name="stress" >
{_v(STRESS_KBAR)}
  </varray>
  <energy>
   <i name="e_fr_energy">{E_FREE:16.8f} </i>
   <i name="e_wo_entrp">{E_FREE + 0.01:16.8f} </i>
   <i name="e_0_energy">{E_0:16.8f} </i>
  </energy>
  <time name="totalsc">    0.50    0.50</time>
 </calculation>
{_structure("finalpos")}
</modeling>
"""


def main():
    for name in ("finished", "unconverged", "truncated", "no_vasprun"):
        (HERE / name).mkdir(exist_ok=True)
    full = vasprun()
    (HERE / "finished" / "vasprun.xml").write_text(full)
    (HERE / "finished" / "hpc_itc.json").write_text(
        '{"config_type": "cu_n_diamond_rattle", "n_atoms": 4, "info": {"sample_id": "fixture", "rattle_A": 0.05}}\n')
    (HERE / "unconverged" / "vasprun.xml").write_text(vasprun(nelm=6, n_scf=6))
    cut = full.index('<varray name="forces"')
    (HERE / "truncated" / "vasprun.xml").write_text(full[:cut])
    (HERE / "no_vasprun" / "INCAR").write_text("GGA = PS\nENCUT = 600\n")
    (HERE / "no_vasprun" / "OUTCAR").write_text(" running on    1 total cores\n")


if __name__ == "__main__":
    main()
